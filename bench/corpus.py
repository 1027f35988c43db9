"""The SpamAssassin corpus for benchmarks: parsed texts, labels, folders, and cached vectors.

Vectors are derived data: cached under var/bench (never committed) keyed by encoder, chunking
or window, and the emails, so reruns of the classifier bench skip the slow embedding step.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np

from core.config import get_settings
from core.corpus import corpus_archives
from core.importers import iter_messages, label_from_origin
from core.mail import parse_email, text_for_model
from core.models import Label

EARLY_FOLDERS = ("easy_ham", "hard_ham", "spam")  # 2002
LATE_FOLDERS = ("easy_ham_2", "spam_2")  # later


@dataclass
class Corpus:
    ids: list[str]
    folders: np.ndarray
    texts: list[str]
    y: np.ndarray  # 1 = spam


def load_corpus() -> Corpus:
    settings = get_settings()
    archives = corpus_archives(settings.sample_corpus_dir)
    if not archives:
        raise SystemExit(f"no corpus in {settings.sample_corpus_dir}")
    ids, folders, texts, y = [], [], [], []
    for message in iter_messages(archives, settings.max_message_bytes):
        if message.data is None:
            continue
        parsed = parse_email(message.data)
        folder, name = message.origin[-1].rsplit("/", 1)
        ids.append(f"{folder}/{name}")
        folders.append(folder)
        texts.append(text_for_model(parsed.subject, parsed.text, settings.model_text_chars))
        y.append(label_from_origin(message.origin) == Label.SPAM)
    return Corpus(ids, np.array(folders), texts, np.array(y, dtype=int))


def temporal_split(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the 2002 folders (training) and of the later ones (test)."""
    return (np.flatnonzero(np.isin(corpus.folders, EARLY_FOLDERS)),
            np.flatnonzero(np.isin(corpus.folders, LATE_FOLDERS)))


def _cached(kind: str, key: list, compute) -> dict[str, np.ndarray]:
    """Vectors from var/bench/<kind>-<hash of key>.npz, or ``compute()`` saved there."""
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    path = get_settings().var_dir / "bench" / f"{kind}-{digest}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    vectors = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **vectors)
    return vectors


def cached_vectors(corpus: Corpus, encoder, log=print) -> dict[str, np.ndarray]:
    """Per email: the mean of its chunk vectors, for CLS and mean pooling.

    Returns {"cls-chunks", "mean-chunks"} → (n, dim) arrays.
    """
    from ml.encoder import document_vector

    def compute() -> dict[str, np.ndarray]:
        chunk_texts, owners = [], []
        for index, text in enumerate(corpus.texts):
            for chunk in encoder.chunk(text):
                chunk_texts.append(chunk.text)
                owners.append(index)
        owners = np.array(owners)
        log(f"embedding {len(chunk_texts)} chunks of {len(corpus.texts)} emails")
        start = time.perf_counter()
        pooled = encoder.embed_poolings(chunk_texts)
        log(f"embedded in {time.perf_counter() - start:.0f} s")
        return {f"{pooling}-chunks": np.stack([
            document_vector(chunk_vectors[owners == i]) for i in range(len(corpus.texts))])
            for pooling, chunk_vectors in pooled.items()}

    key = [encoder.name, encoder.max_length, encoder.config.chunk_overlap,
           encoder.config.max_chunks, corpus.ids]
    return _cached("vectors", key, compute)


def cached_window_vectors(corpus: Corpus, encoder, window: int, log=print
                          ) -> dict[str, np.ndarray]:
    """Per email: its classification window (the first ``window`` tokens, special tokens
    included) embedded once, as the verdict pipeline reads mail.

    Returns {"cls", "mean"} → (n, dim) arrays.
    """
    def compute() -> dict[str, np.ndarray]:
        log(f"embedding the first {window} tokens of {len(corpus.texts)} emails")
        start = time.perf_counter()
        pooled = encoder.embed_poolings(corpus.texts, max_length=window)
        log(f"embedded in {time.perf_counter() - start:.0f} s")
        return pooled

    return _cached("window", [encoder.name, window, corpus.ids], compute)


def subset(corpus: Corpus, size: int) -> Corpus:
    """A stratified random subset of about ``size`` messages (for quick checks)."""
    from sklearn.model_selection import StratifiedKFold

    _, chosen = next(StratifiedKFold(max(2, len(corpus.y) // size), shuffle=True,
                                     random_state=0).split(corpus.texts, corpus.y))
    return Corpus([corpus.ids[i] for i in chosen], corpus.folders[chosen],
                  [corpus.texts[i] for i in chosen], corpus.y[chosen])
