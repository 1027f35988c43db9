"""Reading messages from every container format, streamed, with errors reported per item."""

from __future__ import annotations

import io
import time
import tarfile
import zipfile
from pathlib import Path

import pytest

from core.importers import count_messages, iter_messages, label_from_origin
from core.models import Label

LIMIT = 10_000


def message(n: int, body: str = "hello") -> bytes:
    return f"From: sender{n}@example.com\nSubject: message {n}\n\n{body} {n}\n".encode()


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def read(paths, limit=LIMIT):
    return list(iter_messages(paths, limit))


def test_single_eml_file_is_kept_byte_for_byte(tmp_path):
    raw = b"From someone@example.com Mon Jul 29 11:28:02 2002\r\n" + message(1)
    (tmp_path / "one.eml").write_bytes(raw)
    [found] = read([tmp_path / "one.eml"])
    assert found.data == raw and found.error is None
    assert found.origin == ("one.eml",)


def test_mbox_is_split_and_unescaped(tmp_path):
    mbox = (b"From a@example.com Mon Jan  1 00:00:00 2024\n" + message(1)
            + b">From the start of a line\n\n"
            + b"From b@example.com Mon Jan  1 00:00:01 2024\n" + message(2) + b"\n"
            + b"From c@example.com Mon Jan  1 00:00:02 2024\n" + message(3))
    (tmp_path / "inbox.mbox").write_bytes(mbox)
    found = read([tmp_path / "inbox.mbox"])
    assert [m.data for m in found] == [
        message(1) + b"From the start of a line\n", message(2), message(3)]
    assert [m.name for m in found] == ["inbox.mbox#1", "inbox.mbox#2", "inbox.mbox#3"]
    assert count_messages([tmp_path / "inbox.mbox"], LIMIT) == 3


def test_maildir_reads_cur_and_new_but_not_tmp(tmp_path):
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1.host:2,S").write_bytes(message(1))
    (maildir / "new" / "2.host").write_bytes(message(2))
    (maildir / "tmp" / "3.host").write_bytes(message(3))  # still being delivered
    found = read([maildir])
    assert sorted(m.data for m in found) == [message(1), message(2)]


def test_directory_skips_hidden_files_and_reports_non_mail(tmp_path):
    (tmp_path / "a.eml").write_bytes(message(1))
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "README.md").write_bytes(b"# Notes about this folder\n")
    (tmp_path / "empty.eml").write_bytes(b"")
    found = read([tmp_path])
    by_name = {m.name.split("/", 1)[1]: m for m in found}
    assert set(by_name) == {"a.eml", "README.md", "empty.eml"}
    assert by_name["a.eml"].data == message(1)
    assert by_name["README.md"].not_mail and by_name["README.md"].data is None
    assert by_name["empty.eml"].not_mail


@pytest.mark.parametrize("name,mode", [("mail.tar", "w"), ("mail.tar.gz", "w:gz"),
                                       ("mail.tar.bz2", "w:bz2"), ("mail.tar.xz", "w:xz")])
def test_tar_archives_are_streamed(tmp_path, name, mode):
    write_tar(tmp_path / name, {"spam/001": message(1), "spam/002": message(2)}, mode)
    found = read([tmp_path / name])
    assert [m.data for m in found] == [message(1), message(2)]
    assert found[0].origin == (name, "spam/001")


def test_zip_with_mbox_and_nested_tar(tmp_path):
    inner_tar = io.BytesIO()
    with tarfile.open(fileobj=inner_tar, mode="w:gz") as archive:
        info = tarfile.TarInfo("ham/1.eml")
        info.size = len(message(3))
        archive.addfile(info, io.BytesIO(message(3)))
    mbox = (b"From a@x Mon Jan  1 00:00:00 2024\n" + message(1) + b"\n"
            + b"From b@x Mon Jan  1 00:00:00 2024\n" + message(2))
    (tmp_path / "export.zip").write_bytes(zip_bytes({
        "folder/list.mbox": mbox, "nested.tar.gz": inner_tar.getvalue(),
        "__MACOSX/._junk": b"junk"}))
    found = read([tmp_path / "export.zip"])
    assert [m.data for m in found] == [message(1), message(2), message(3)]
    assert found[2].origin == ("export.zip", "nested.tar.gz", "ham/1.eml")


def test_too_large_messages_fail_without_stopping_the_rest(tmp_path):
    big = message(9, body="x" * 5000)
    write_tar(tmp_path / "mixed.tar.gz", {"a": message(1), "big": big, "c": message(3)})
    (tmp_path / "big.eml").write_bytes(big)
    found = read([tmp_path / "mixed.tar.gz", tmp_path / "big.eml"], limit=2000)
    assert [m.data for m in found if m.data] == [message(1), message(3)]
    errors = [m for m in found if m.error]
    assert len(errors) == 2 and all("limit" in m.error for m in errors)


def test_corrupt_archive_and_missing_path_are_reported(tmp_path):
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    (tmp_path / "good.eml").write_bytes(message(1))
    found = read([tmp_path / "broken.tar.gz", tmp_path / "nope.eml", tmp_path / "good.eml"])
    assert found[0].error.startswith("unreadable")
    assert found[1].error == "no such file or directory"
    assert found[2].data == message(1)


@pytest.mark.parametrize("origin,label", [
    (("spam_2.tar.gz", "spam_2/00001.abc"), Label.SPAM),
    (("easy_ham.tar.gz", "easy_ham/00001.abc"), Label.HAM),
    (("hard_ham.tar.gz", "hard_ham/0001"), Label.HAM),
    (("mail/spam/1.eml",), Label.SPAM),
    (("spamassassin/easy_ham/1",), Label.HAM),  # the innermost folder decides
    (("Spam.mbox#3",), Label.SPAM),
    (("inbox/1.eml",), None),
])
def test_label_from_origin(origin, label):
    assert label_from_origin(origin) == label


def test_corpus_download_check_catches_a_changed_message(tmp_path):
    import hashlib

    from core.corpus import md5_mismatches

    good, changed = message(1), message(2)
    names = {f"spam/00001.{hashlib.md5(good).hexdigest()}": good,
             f"spam/00002.{hashlib.md5(changed).hexdigest()}": changed + b"tampered"}
    archive = write_tar(tmp_path / "spam.tar.bz2", names, "w:bz2")
    assert md5_mismatches(archive, LIMIT) == [f"spam.tar.bz2/{list(names)[1]}"]


def peak_memory_while(work) -> tuple[object, int]:
    """The result of ``work()`` and the most memory Python held at once while it ran."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_mbox_with_a_huge_line_is_read_in_bounded_memory(tmp_path):
    # One 40 MiB line without a newline: read whole, it would sit in memory at once.
    path = tmp_path / "huge.mbox"
    with open(path, "wb") as handle:
        handle.write(b"From a@example.com Mon Jan  1 00:00:00 2024\nSubject: x\n\n")
        for _ in range(40):
            handle.write(b"x" * (1024 * 1024))
    found, peak = peak_memory_while(lambda: read([path]))
    assert [m.error for m in found] == [f"larger than the {LIMIT}-byte limit"]
    assert peak < 4 * 1024 * 1024
    count, peak = peak_memory_while(lambda: count_messages([path], LIMIT))
    assert count == 1 and peak < 4 * 1024 * 1024


MEMBER_BYTES = 32 * 1024 * 1024


@pytest.mark.parametrize("mode", ["w:bz2", "w:gz", "w:xz"])
def test_a_highly_compressed_member_is_skipped_in_linear_work(tmp_path, mode):
    """A 32 MiB member of one repeated byte packs into a few hundred bytes. Python's tarfile
    decompresses such a member into one buffer and copies the rest of it on every 10 KiB
    read: quadratic time (21 s for bz2) and the whole member in memory."""
    archive = write_tar(tmp_path / "bomb.tar", {"spam/big": b"a" * MEMBER_BYTES,
                                                "spam/after": message(1)}, mode)
    found, peak = peak_memory_while(lambda: read([archive]))
    assert [(m.origin[-1], m.data, bool(m.error)) for m in found] == [
        ("spam/big", None, True), ("spam/after", message(1), False)]
    assert peak < 12 * 1024 * 1024  # xz's decoder alone holds an 8 MiB dictionary
    # Linear work: reading the archive costs about the CPU time of decompressing it (the
    # quadratic reads cost 13 times as much for gz, 60 times for bz2 and xz).
    import bz2
    import gzip
    import lzma

    unpack = {"w:bz2": bz2.decompress, "w:gz": gzip.decompress, "w:xz": lzma.decompress}[mode]
    packed = archive.read_bytes()
    started = time.process_time()
    for _ in range(3):
        unpack(packed)
    decompress_seconds = (time.process_time() - started) / 3
    started = time.process_time()
    read([archive])
    assert time.process_time() - started < 5 * decompress_seconds + 0.5


def test_total_unpacked_bytes_per_archive_are_bounded(tmp_path):
    members = {"spam/1": message(1), "spam/2": message(2),
               "spam/big": b"a" * (3 * LIMIT), "spam/3": message(3)}
    archive = write_tar(tmp_path / "bomb.tar.bz2", members, "w:bz2")
    (tmp_path / "next.eml").write_bytes(message(4))
    found = list(iter_messages([archive, tmp_path / "next.eml"], LIMIT,
                               max_archive_bytes=2 * LIMIT))
    # The messages before the limit are kept; the rest of the archive is not read.
    assert [m.data for m in found if m.data] == [message(1), message(2), message(4)]
    [stopped] = [m for m in found if m.error]
    assert stopped.origin == ("bomb.tar.bz2",)
    assert stopped.error.startswith("archive over the unpacked size limit:")
    assert f"{2 * LIMIT}" in stopped.error


def test_nested_archives_share_their_outer_archive_budget(tmp_path):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:bz2") as archive:
        for n in range(10):
            data = message(n, body="y" * 4000)
            info = tarfile.TarInfo(f"ham/{n}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (tmp_path / "outer.zip").write_bytes(zip_bytes({"inner.tar.bz2": inner.getvalue()}))
    found = list(iter_messages([tmp_path / "outer.zip"], LIMIT, max_archive_bytes=20_000))
    kept = [m for m in found if m.data]
    assert 0 < len(kept) < 10
    assert found[-1].origin == ("outer.zip",) and "unpacked size limit" in found[-1].error
