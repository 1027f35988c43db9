"""The packaged encoder as an ONNX model for ONNX Runtime, fp32 or int8, exported once.

The export loads the model with eager attention: with the default sdpa attention the
TorchScript exporter writes a graph whose outputs are wrong (cosine 0.92 to PyTorch). int8 is
dynamic quantization of the weights (per output channel, signed), the activations quantized
on the fly; its vectors differ slightly from fp32, so they are a vector space of their own.

Files are cached per package version and written to a temporary name then renamed, so worker
processes that start together never read a half-written model.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

OPSET = 17


def onnx_model_file(package: str, directory: Path, cache_dir: Path, int8: bool) -> Path:
    """The ONNX file of ``package`` (its model folder is ``directory``), exported or
    quantized into ``cache_dir`` on first use."""
    folder = Path(cache_dir) / f"{package}-{importlib.metadata.version(package)}"
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        _write_atomically(fp32, lambda path: _export(directory, path))
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


def _export(directory: Path, path: Path) -> None:
    import torch
    from transformers import AutoModel

    class HiddenStates(torch.nn.Module):
        """The model called by keyword (its positional arguments change between versions of
        transformers), giving only the last hidden states."""

        def __init__(self) -> None:
            super().__init__()
            self.model = AutoModel.from_pretrained(directory, local_files_only=True,
                                                   attn_implementation="eager").eval()

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              return_dict=True).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    with torch.inference_mode():
        torch.onnx.export(
            HiddenStates(), (ids, torch.ones_like(ids)), str(path), dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                          "attention_mask": {0: "batch", 1: "tokens"},
                          "last_hidden_state": {0: "batch", 1: "tokens"}})


def _quantize(fp32: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(path), per_channel=True, weight_type=QuantType.QInt8)
