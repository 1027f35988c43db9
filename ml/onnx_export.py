"""The packaged encoder (and merged fine-tunes of it) as ONNX models for ONNX Runtime, fp32
or int8, exported once.

The export loads the model with eager attention: with the default sdpa attention the
TorchScript exporter writes a graph whose outputs are wrong (cosine 0.92 to PyTorch). int8 is
dynamic quantization of the weights (per output channel, signed), the activations quantized
on the fly; its vectors differ slightly from fp32, so they are a vector space of their own.

Files are cached per package version (a fine-tune: per artifact digest) and written to a
temporary name then renamed, so worker processes that start together never read a
half-written model.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

OPSET = 17


def onnx_model_file(package: str, directory: Path, cache_dir: Path, int8: bool,
                    adapted: str | None = None, weights: dict | None = None) -> Path:
    """The ONNX file of ``package`` (its model folder is ``directory``; an ``adapted``
    version's ``weights`` loaded over it), exported or quantized into ``cache_dir`` on first
    use; its output is the last hidden states."""
    folder = Path(cache_dir) / (f"{package}-{importlib.metadata.version(package)}"
                                + (f"+{adapted}" if adapted else ""))
    return _cached(folder, lambda path: _export(_hidden_states_module(directory, weights),
                                                path, "last_hidden_state"), int8)


def sequence_classifier_file(build_model, folder: Path, int8: bool) -> Path:
    """The ONNX file of the sequence classifier ``build_model()`` returns (a merged
    fine-tune, loaded with eager attention), exported once into ``folder``; its output is
    the logits."""
    return _cached(Path(folder),
                   lambda path: _export(_logits_module(build_model()), path, "logits"), int8)


def onnx_session(path: Path, threads: int = 0):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cached(folder: Path, export, int8: bool) -> Path:
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        _write_atomically(fp32, export)
    if not int8:
        return fp32
    quantized = folder / "model-int8.onnx"
    if not quantized.exists():
        _write_atomically(quantized, lambda path: _quantize(fp32, path))
    return quantized


def _write_atomically(target: Path, write) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".onnx.part")
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)  # mkstemp makes it private; other users' workers read it
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _keyword_module(model, output: str):
    """``model`` called by keyword (its positional arguments change between versions of
    transformers), giving only ``output``."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                      return_dict=True), output)

    return Wrapped()


def _hidden_states_module(directory: Path, weights: dict | None):
    from transformers import AutoModel

    from ml.encoder import load_pretrained, load_weights

    model = load_pretrained(AutoModel, directory, attn_implementation="eager").eval()
    load_weights(model, weights)
    return _keyword_module(model, "last_hidden_state")


def _logits_module(model):
    return _keyword_module(model.eval(), "logits")


def _export(module, path: Path, output: str) -> None:
    import torch

    ids = torch.ones((2, 8), dtype=torch.long)
    with torch.inference_mode():
        torch.onnx.export(
            module, (ids, torch.ones_like(ids)), str(path), dynamo=False,
            opset_version=OPSET, input_names=["input_ids", "attention_mask"],
            output_names=[output],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                          "attention_mask": {0: "batch", 1: "tokens"},
                          output: {0: "batch", 1: "tokens"} if output != "logits"
                          else {0: "batch"}})


def _quantize(fp32: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(path), per_channel=True, weight_type=QuantType.QInt8)
