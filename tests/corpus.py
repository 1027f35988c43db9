"""Read messages of the SpamAssassin corpus in ../shared (never copied into the project)."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

import pytest

from tests.conftest import CORPUS_DIR

needs_corpus = pytest.mark.skipif(not (CORPUS_DIR / "MANIFEST.md").exists(),
                                  reason="the SpamAssassin corpus is not beside the project")


def corpus_message(name: str) -> bytes:
    """One message by folder and number, e.g. ``spam_2/00169``."""
    folder, number = name.split("/")
    with tarfile.open(CORPUS_DIR / f"{folder}.tar.gz") as archive:
        for member in archive:
            if member.isfile() and member.name.startswith(f"{folder}/{number}."):
                return archive.extractfile(member).read()
    raise LookupError(f"no message {name} in the corpus")


def all_corpus_messages() -> Iterator[tuple[str, bytes]]:
    for path in sorted(CORPUS_DIR.glob("*.tar.gz")):
        with tarfile.open(path) as archive:
            for member in archive:
                if member.isfile():
                    yield member.name, archive.extractfile(member).read()
