"""Read raw messages from .eml files, mbox, Maildir, directories and archives, streamed.

``iter_messages`` yields one ``RawMessage`` per message found, in a stable order. Archives
(.tar, .tar.gz, .tar.bz2, .tar.xz, .zip) are read member by member, never unpacked to disk,
and may hold any of the other forms, nested archives included. A message that cannot be read
is yielded with an ``error`` so the caller can report it and go on.

Memory stays bounded whatever the input: lines are read at most ``max_bytes`` at a time,
compressed tar streams are decompressed a buffer at a time (Python's tarfile holds a whole
decompressed run in memory and re-copies it on every read: quadratic on a highly compressed
member), and each archive may unpack at most ``max_archive_bytes`` in all, nested archives
included; past that it stops with an error and the messages read before it stand.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import os
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.mail import is_probably_email
from core.models import Label

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
MAX_ARCHIVE_DEPTH = 3
_MBOX_ESCAPED_FROM = re.compile(rb"^>(>*From )")
_MBOX_SEPARATOR = re.compile(rb"\n\r?\nFrom ")
# Compressed tar streams by their first bytes, and how to read each a buffer at a time.
_DECOMPRESSORS = ((b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw)),
                  (b"BZh", bz2.BZ2File), (b"\xfd7zXZ\x00", lzma.LZMAFile))
_UNREADABLE = (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error,
               lzma.LZMAError)


@dataclass(frozen=True)
class RawMessage:
    """A message as read, or the reason it could not be read."""

    origin: tuple[str, ...]  # the given path's name, then the parts inside it
    data: bytes | None = None
    error: str | None = None
    not_mail: bool = False  # the file was read but is not a message (a README, say)

    @property
    def name(self) -> str:
        return "/".join(self.origin)


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(ZIP_SUFFIXES)


def label_from_origin(origin: Iterable[str]) -> Label | None:
    """spam* → spam, *ham* → ham, judged on the innermost folder or archive name first."""
    parts: list[str] = []
    for part in origin:
        parts.extend(p for p in re.split(r"[/\\]", part) if p)
    for part in reversed(parts):
        stem = part.lower()
        for suffix in TAR_SUFFIXES + ZIP_SUFFIXES + (".mbox", ".mbx", ".eml"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if stem.startswith("spam"):
            return Label.SPAM
        if "ham" in stem:
            return Label.HAM
    return None


class _ArchiveTooLarge(Exception):
    """An archive unpacked more bytes than it may."""


class _UnpackBudget:
    """The bytes one archive may still unpack, shared by the archives nested in it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise _ArchiveTooLarge(f"unpacked more than {self.limit} bytes "
                                  "(SPAMSIFT_MAX_ARCHIVE_BYTES); the rest was not read")


class _BudgetedReader(io.RawIOBase):
    """A stream whose bytes are charged to an archive's unpack budget as they are read."""

    def __init__(self, stream: BinaryIO, budget: _UnpackBudget) -> None:
        self._stream = stream
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        self._budget.spend(len(data))
        buffer[:len(data)] = data
        return len(data)


def iter_messages(paths: Iterable[str | os.PathLike], max_bytes: int,
                  max_archive_bytes: int | None = None) -> Iterator[RawMessage]:
    """Every message under ``paths``; ``max_archive_bytes`` defaults to the setting."""
    if max_archive_bytes is None:
        from core.config import get_settings

        max_archive_bytes = get_settings().max_archive_bytes
    for given in paths:
        path = Path(given)
        name = path.name or str(path)
        if path.is_dir():
            yield from _iter_directory(path, (name,), max_bytes, max_archive_bytes)
        elif path.is_file():
            yield from _iter_file(path, (name,), max_bytes, max_archive_bytes)
        else:
            yield RawMessage((str(given),), error="no such file or directory")


def count_messages(paths: Iterable[str | os.PathLike], max_bytes: int) -> int:
    """How many entries ``iter_messages`` will yield (for progress bars); reads headers only
    where it can, and the whole of archives and mbox files where it must."""
    total = 0
    for given in paths:
        path = Path(given)
        files = _directory_files(path) if path.is_dir() else [path]
        for file in files:
            try:
                total += _count_file(file, max_bytes)
            except OSError:
                total += 1
    return total


def _count_file(path: Path, max_bytes: int) -> int:
    if is_tar_name(path.name) or is_zip_name(path.name):
        return sum(1 for _ in iter_messages([path], max_bytes))
    with open(path, "rb") as handle:
        if handle.read(5) != b"From ":
            return 1
        handle.seek(0)
        return _count_mbox(handle, max_bytes)


def _count_mbox(handle: BinaryIO, max_bytes: int) -> int:
    count, previous_blank = 0, True
    for line in _read_lines(handle, max_bytes):
        if previous_blank and line.startswith(b"From "):
            count += 1
        previous_blank = line in (b"\n", b"\r\n")
    return count


def _directory_files(directory: Path) -> list[Path]:
    """Files under a directory, sorted; hidden files and Maildir's tmp/ are left out."""
    found = []
    for root, dirs, files in os.walk(directory):
        is_maildir = {"cur", "new", "tmp"} <= set(dirs)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (is_maildir and d == "tmp"))
        found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return found


def _iter_directory(directory: Path, origin: tuple[str, ...], max_bytes: int,
                    max_archive_bytes: int) -> Iterator[RawMessage]:
    for file in _directory_files(directory):
        relative = file.relative_to(directory).as_posix()
        yield from _iter_file(file, origin[:-1] + (origin[-1] + "/" + relative,), max_bytes,
                              max_archive_bytes)


def _iter_file(path: Path, origin: tuple[str, ...], max_bytes: int, max_archive_bytes: int
               ) -> Iterator[RawMessage]:
    budget = _UnpackBudget(max_archive_bytes)
    try:
        with open(path, "rb") as handle:
            if is_tar_name(path.name):
                yield from _iter_tar(handle, origin, max_bytes, budget, depth=1)
            elif is_zip_name(path.name):
                yield from _iter_zip(handle, origin, max_bytes, budget, depth=1)
            else:
                yield from _iter_stream(handle, origin, path.stat().st_size, max_bytes)
    except _ArchiveTooLarge as exc:
        yield RawMessage(origin, error=f"archive over the unpacked size limit: {exc}")
    except _UNREADABLE as exc:
        yield RawMessage(origin, error=f"unreadable: {exc}")


def _read_lines(handle: BinaryIO, max_bytes: int) -> Iterator[bytes]:
    """The lines of a stream, a line longer than ``max_bytes`` in pieces (its message is
    over the limit anyway), so one endless line never fills memory."""
    return iter(lambda: handle.readline(max_bytes + 1), b"")


def _iter_stream(handle: BinaryIO, origin: tuple[str, ...], size: int, max_bytes: int
                 ) -> Iterator[RawMessage]:
    """One file's content, read forward only: an mbox, or a single message.

    A file that starts with a ``From `` line but holds one message is kept byte for byte
    (the SpamAssassin corpus stores messages that way); only real mboxes are split.
    """
    if size > max_bytes:
        head = handle.read(5)
        if head == b"From ":
            first = head + handle.readline(max_bytes + 1)
            lines = itertools.chain([first], _read_lines(handle, max_bytes))
            yield from _iter_mbox(lines, origin, max_bytes)
        else:
            yield RawMessage(origin, error=f"larger than the {max_bytes}-byte limit "
                                           f"({size} bytes)")
        return
    data = handle.read(max_bytes + 1)
    if data.startswith(b"From ") and _MBOX_SEPARATOR.search(data):
        yield from _iter_mbox(data.splitlines(keepends=True), origin, max_bytes)
    elif len(data) > max_bytes:
        yield RawMessage(origin, error=f"larger than the {max_bytes}-byte limit")
    elif not data.strip():
        yield RawMessage(origin, error="empty file", not_mail=True)
    elif not is_probably_email(data):
        yield RawMessage(origin, error="does not look like an email (no header lines)",
                         not_mail=True)
    else:
        yield RawMessage(origin, data=data)


def _iter_mbox(lines: Iterable[bytes], origin: tuple[str, ...], max_bytes: int
               ) -> Iterator[RawMessage]:
    """Split an mbox stream at ``From `` lines that follow a blank line (mboxrd unescaping)."""
    number = 0
    current: list[bytes] = []
    size = 0
    too_big = False
    previous_blank = True

    def finish() -> RawMessage:
        where = origin[:-1] + (f"{origin[-1]}#{number}",)
        if too_big:
            return RawMessage(where, error=f"larger than the {max_bytes}-byte limit")
        data = b"".join(current)
        if data.endswith(b"\n\n"):
            data = data[:-1]  # the blank line that separates messages is not part of them
        return RawMessage(where, data=data)

    for line in lines:
        if previous_blank and line.startswith(b"From "):
            if number:
                yield finish()
            number += 1
            current, size, too_big = [], 0, False
            previous_blank = False
            continue
        previous_blank = line in (b"\n", b"\r\n")
        size += len(line)
        if size > max_bytes:
            too_big = True
            current = []
        elif not too_big:
            current.append(_MBOX_ESCAPED_FROM.sub(rb"\1", line))
    if number:
        yield finish()


def _iter_member(name: str, handle: BinaryIO, size: int, origin: tuple[str, ...],
                 max_bytes: int, budget: _UnpackBudget, depth: int) -> Iterator[RawMessage]:
    """A member of an archive: a nested archive, an mbox or a single message."""
    member_origin = origin + (name,)
    if is_tar_name(name) or is_zip_name(name):
        if depth >= MAX_ARCHIVE_DEPTH:
            yield RawMessage(member_origin, error="archive nested too deeply")
        elif is_tar_name(name):
            yield from _iter_tar(handle, member_origin, max_bytes, budget, depth + 1)
        else:
            # zip needs to seek; a nested zip is read into memory, within the size limit
            if size > max_bytes:
                yield RawMessage(member_origin, error="nested zip larger than the size limit")
                return
            yield from _iter_zip(io.BytesIO(handle.read()), member_origin, max_bytes, budget,
                                 depth + 1)
        return
    yield from _iter_stream(handle, member_origin, size, max_bytes)


def _iter_tar(handle: BinaryIO, origin: tuple[str, ...], max_bytes: int,
              budget: _UnpackBudget, depth: int) -> Iterator[RawMessage]:
    with tarfile.open(fileobj=_unpacked(handle, budget), mode="r|") as archive:
        for member in archive:
            if not member.isfile() or _is_hidden(member.name):
                continue
            extracted = archive.extractfile(member)
            if extracted is None:
                continue
            yield from _iter_member(member.name, extracted, member.size, origin, max_bytes,
                                    budget, depth)


def _unpacked(handle: BinaryIO, budget: _UnpackBudget) -> BinaryIO:
    """A tar stream as tarfile should read it: decompressed a buffer at a time, and its
    decompressed bytes charged to the budget (a plain tar is read as it is)."""
    head = handle.peek(6)[:6]
    for magic, reader in _DECOMPRESSORS:
        if head.startswith(magic):
            return io.BufferedReader(_BudgetedReader(reader(handle), budget))
    return handle


def _iter_zip(handle: BinaryIO, origin: tuple[str, ...], max_bytes: int,
              budget: _UnpackBudget, depth: int) -> Iterator[RawMessage]:
    with zipfile.ZipFile(handle) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if info.is_dir() or _is_hidden(info.filename):
                continue
            try:
                with archive.open(info) as member:
                    unpacked = io.BufferedReader(_BudgetedReader(member, budget))
                    yield from _iter_member(info.filename, unpacked, info.file_size, origin,
                                            max_bytes, budget, depth)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
                yield RawMessage(origin + (info.filename,), error=f"unreadable: {exc}")


def _is_hidden(member_name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in member_name.split("/"))
