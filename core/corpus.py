"""The SpamAssassin public corpus as sample mail: found beside the project, or downloaded.

Each message's file name in the corpus ends with the MD5 of its content, so a download is
checked message by message (one known exception, documented upstream).
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from core.importers import iter_messages

PUBLIC_HOME = "https://spamassassin.apache.org/old/publiccorpus/"
ARCHIVES = (
    "20030228_easy_ham.tar.bz2",
    "20030228_easy_ham_2.tar.bz2",
    "20030228_hard_ham.tar.bz2",
    "20030228_spam.tar.bz2",
    "20050311_spam_2.tar.bz2",
)
# Upstream changed hostnames in this message's headers after its name was assigned.
KNOWN_MD5_MISMATCHES = frozenset({"00230.244a63cd74c81123ef26129453e32c95"})


def corpus_archives(directory: Path) -> list[Path]:
    """The corpus archives in ``directory`` (the repacked .tar.gz or the original .tar.bz2)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith((".tar.gz", ".tar.bz2")))


def md5_mismatches(archive: Path, max_bytes: int) -> list[str]:
    """Names of messages whose content does not match the MD5 in their file name."""
    bad = []
    for message in iter_messages([archive], max_bytes):
        if message.data is None:
            continue
        name = message.origin[-1].rsplit("/", 1)[-1]
        digest = name.rsplit(".", 1)[-1]
        if len(digest) != 32 or name in KNOWN_MD5_MISMATCHES:
            continue
        if hashlib.md5(message.data).hexdigest() != digest:
            bad.append(message.name)
    return bad


def download_corpus(directory: Path, max_bytes: int, timeout: float = 30) -> list[Path]:
    """Fetch the archives from the public home and verify every message; raises OSError
    when the network is unavailable and ValueError when a message fails its checksum."""
    directory.mkdir(parents=True, exist_ok=True)
    fetched = []
    for name in ARCHIVES:
        target = directory / name
        if not target.exists():
            partial = target.with_suffix(".part")
            with urllib.request.urlopen(PUBLIC_HOME + name, timeout=timeout) as response:
                partial.write_bytes(response.read())
            bad = md5_mismatches(partial, max_bytes)
            if bad:
                partial.unlink()
                raise ValueError(f"{name}: {len(bad)} messages fail their MD5, e.g. {bad[0]}")
            partial.rename(target)
        fetched.append(target)
    return fetched
