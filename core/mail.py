"""Parse raw RFC 822 / MIME messages into the text and metadata spamsift stores.

Damaged mail is normal mail: ``parse_email`` never raises. It returns what it could read and
records every problem it met in ``defects`` (the stdlib parser's own defects, plus charsets it
could not honour and structures it had to guess at).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader, UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses

from core.html_text import html_to_text, normalise_whitespace

# Headers every well-formed message carries (RFC 5322 requires From and Date).
REQUIRED_HEADERS = ("From", "Date", "Subject", "Message-ID")

# Parts nested deeper than this are not opened (a defence against crafted recursion).
MAX_DEPTH = 20

_FALLBACK_CHARSETS = ("utf-8", "cp1252")
# The stdlib parser keeps bytes it cannot decode as these lone surrogates (surrogateescape).
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")
# Longer header values are parsed each time they are read, not kept in memory.
_MAX_REMEMBERED_HEADER = 1000
# Longer address headers (To, Cc, ...) are read by the simpler email.utils.getaddresses.
_MAX_PARSED_ADDRESS_HEADER = 2000
# Headers whose value carries MIME parameters, and how many of those are read.
_PARAMETER_HEADERS = frozenset({"content-type", "content-disposition"})
MAX_MIME_PARAMETERS = 50
_EMPTY_PARAMETERS = re.compile(r";(?:[ \t\r\n]*;)+")


@dataclass
class ParsedEmail:
    message_id: str | None = None
    subject: str = ""
    sender: str | None = None
    recipients: list[str] = field(default_factory=list)
    sent_at: datetime | None = None
    headers: list[list[str]] = field(default_factory=list)
    text: str = ""
    attachments: list[dict] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


def sha256(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def has_escaped_bytes(value: str) -> bool:
    return not value.isascii() and _ESCAPED_BYTES.search(value) is not None


def clean_text(value: str) -> str:
    """Make a string safe to store: undo surrogate escapes, drop NULs (PostgreSQL refuses them)."""
    if has_escaped_bytes(value):
        value = decode_bytes(value.encode("utf-8", "surrogateescape"), None)[0]
    return value.replace("\x00", "")


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode with the declared charset, else UTF-8, else cp1252; return (text, defect or None)."""
    defect = None
    if charset:
        try:
            return data.decode(charset), None
        except LookupError:
            defect = f"unknown charset {charset!r}"
        except UnicodeDecodeError:
            defect = f"bytes not valid in declared charset {charset!r}"
    for fallback in _FALLBACK_CHARSETS:
        try:
            return data.decode(fallback), defect
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace"), defect  # cp1252 leaves 5 bytes undefined


def raw_header(raw: bytes, name: str) -> str | None:
    """The unparsed text of the first ``name`` header, unfolded; no MIME decoding.

    Used for the Message-ID, which the stdlib parser truncates when it is malformed.
    """
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    pattern = re.compile(rb"^" + re.escape(name.encode()) + rb"[ \t]*:(.*(?:\r?\n[ \t].*)*)",
                         re.I | re.M)
    match = pattern.search(head)
    if not match:
        return None
    value = re.sub(rb"\r?\n[ \t]+", b" ", match.group(1)).strip()
    return clean_text(decode_bytes(value, None)[0]) or None


def text_for_model(subject: str | None, text: str | None, max_chars: int) -> str:
    """What the models read: subject and body, truncated (storage keeps the whole text)."""
    return f"{subject or ''}\n\n{text or ''}".strip()[:max_chars]


class _Reader:
    """Walks one message, collecting body text, attachment metadata and defects."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.attachments: list[dict] = []
        self.defects: list[str] = []

    def defect(self, message: str) -> None:
        if message not in self.defects:
            self.defects.append(message)

    def read(self, part: Message, depth: int = 0) -> None:
        try:
            self.read_part(part, depth)
        finally:
            # After reading: decoding a payload adds defects (bad base64, say) to its part.
            for defect in getattr(part, "defects", []):
                self.defect(f"{type(defect).__name__}: {defect}".rstrip(": "))

    def read_part(self, part: Message, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.defect(f"parts nested deeper than {MAX_DEPTH} levels were skipped")
            return
        content_type = _content_type(part, self)
        if content_type == "message/rfc822" and part.is_multipart():
            for inner in part.get_payload():
                self.read_forwarded(inner, depth + 1)
        elif part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            if content_type == "multipart/alternative":
                self.read_alternative(children, depth + 1)
            else:
                for child in children:
                    self.read(child, depth + 1)
        else:
            self.read_leaf(part, content_type)

    def read_forwarded(self, inner: Message, depth: int) -> None:
        subject = _header_text(inner, "Subject", self)
        sender = _header_text(inner, "From", self)
        if subject or sender:
            self.texts.append(f"Forwarded message from {sender or 'unknown'}: {subject}".strip())
        self.read(inner, depth)

    def read_alternative(self, children: list[Message], depth: int) -> None:
        """Read the best alternative: plain text when it has words, else the richest one."""
        attempts: list[_Reader] = []
        for child in children:
            reader = _Reader()
            reader.read(child, depth)
            attempts.append(reader)
            for defect in reader.defects:
                self.defect(defect)
        if not attempts:
            return
        with_text = [(i, r) for i, r in enumerate(attempts) if any(t.strip() for t in r.texts)]
        plain = [(i, r) for i, r in with_text
                 if _content_type(children[i], self) == "text/plain"]
        chosen = (plain or with_text or list(enumerate(attempts)))[0][1]
        self.texts.extend(chosen.texts)
        for reader in attempts:
            self.attachments.extend(reader.attachments)

    def read_leaf(self, part: Message, content_type: str) -> None:
        payload = _payload_bytes(part, self)
        filename = _filename(part, self)
        disposition = (part.get_content_disposition() or "").lower()
        is_text = content_type.startswith("text/") or content_type.startswith("multipart/")
        if is_text and disposition != "attachment" and not (filename and content_type
                                                             not in ("text/plain", "text/html")):
            text, problem = decode_bytes(payload, _charset(part))
            if problem:
                self.defect(f"{content_type} part: {problem}")
            text = clean_text(text)
            if content_type == "text/html":
                text = html_to_text(text)
            elif content_type.startswith("multipart/"):
                self.defect(f"{content_type} without readable parts was read as text")
            self.texts.append(text.strip())
        else:
            self.attachments.append({
                "filename": clean_text(filename) if filename else None,
                "content_type": content_type,
                "size": len(payload),
            })


def _content_type(part: Message, reader: _Reader) -> str:
    try:
        return part.get_content_type()
    except Exception as exc:  # malformed Content-Type headers can raise inside the policy
        reader.defect(f"unreadable Content-Type: {exc}")
        return "text/plain"


def _charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:
        return None
    return charset if charset and charset not in ("unknown-8bit", "x-unknown") else None


def _filename(part: Message, reader: _Reader) -> str | None:
    try:
        return part.get_filename()
    except Exception as exc:
        reader.defect(f"unreadable attachment filename: {exc}")
        return None


def _payload_bytes(part: Message, reader: _Reader) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        reader.defect(f"undecodable payload: {exc}")
        raw = part.get_payload()
        return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    if payload is None:
        return b""
    return payload


def _bounded_parameters(value: str) -> str:
    """A MIME parameter list the stdlib parser reads in bounded time: its time grows with
    the square of the number of parameters, and spam carries thousands of empty ones
    (``text/html ; ; ; ...``). Empty parameters mean nothing and go; after
    ``MAX_MIME_PARAMETERS`` the rest is cut."""
    value = _EMPTY_PARAMETERS.sub(";", value)
    if value.count(";") > MAX_MIME_PARAMETERS:
        value = ";".join(value.split(";", MAX_MIME_PARAMETERS + 1)[:MAX_MIME_PARAMETERS + 1])
    return value


@functools.lru_cache(maxsize=512)
def _header_class(lower_name: str) -> type:
    """policy.default's header class for a name (its registry builds a new class per call)."""
    return policy.default.header_factory[lower_name]


def _parse_header(name: str, value: str):
    """``policy.default.header_fetch_parse(name, value)``, remembered when short.

    A pure function of its arguments, and the same values (Content-Type above all) recur in
    every part and every message.
    """
    if ";" in value and name.lower() in _PARAMETER_HEADERS:
        value = _bounded_parameters(value)
    if len(value) > _MAX_REMEMBERED_HEADER:
        return _new_header(name, value)
    return _remembered_header(name, value)


def _new_header(name: str, value: str):
    return _header_class(name.lower())(name, value.replace("\r", "").replace("\n", ""))


_remembered_header = functools.lru_cache(maxsize=1024)(_new_header)


class _Message(EmailMessage):
    """policy.default's message class, parsing each header value once.

    Its getters (get_content_type, get_param, get_filename, get_content_charset, ...) fetch
    and parse the Content-Type header again on every call, and the parser and the reader
    call them several times for every part. Each part remembers what it parsed (spam's
    Content-Type can run to kilobytes of parameters, too long for the shared cache).
    """

    def get(self, name, failobj=None):
        lower = name.lower()
        for key, value in self.raw_items():
            if key.lower() == lower:
                if hasattr(value, "name"):  # already a header object
                    return value
                return self.parsed_header(key, value)
        return failobj

    def parsed_header(self, name: str, value: str):
        parsed = self.__dict__.setdefault("_parsed_headers", {})
        if (name, value) not in parsed:
            parsed[name, value] = _parse_header(name, value)
        return parsed[name, value]


def _parse_message(raw: bytes) -> Message:
    return BytesParser(_Message, policy=policy.default).parsebytes(raw)


def _header_value(message: _Message, name: str, raw_value: str, reader: _Reader):
    """The parsed header object (str subclass), or plain decoded text when parsing fails.

    Raw 8-bit bytes (not allowed in headers, common in spam) are read as UTF-8, else cp1252.
    Parsed as policy.default's ``header_fetch_parse`` does, but unstructured text without
    encoded words is returned as the unfolded text the parser would give back for it.
    """
    value = raw_value
    if has_escaped_bytes(value):
        reader.defect(f"8-bit bytes in {name} header")
        value = decode_bytes(value.encode("ascii", "surrogateescape"), None)[0]
    unfolded = value.replace("\r", "").replace("\n", "")
    header_class = _header_class(name.lower())
    if "=?" not in unfolded and issubclass(header_class, UnstructuredHeader):
        return unfolded
    if len(unfolded) > _MAX_PARSED_ADDRESS_HEADER and issubclass(header_class, AddressHeader):
        return _LongAddressList(unfolded)
    try:
        return message.parsed_header(name, value)
    except Exception as exc:
        reader.defect(f"unparseable {name} header: {exc}")
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _header_text(message: _Message, name: str, reader: _Reader) -> str:
    for header_name, raw_value in message.raw_items():
        if header_name.lower() == name.lower():
            return clean_text(str(_header_value(message, header_name, raw_value, reader))).strip()
    return ""


class _LongAddressList(str):
    """An address header too long for the stdlib's structured parser, whose time grows fast
    with the number of addresses (spam sends to hundreds at once): its text (encoded words
    decoded), and its addresses as ``email.utils.getaddresses`` reads them."""

    def __new__(cls, unfolded: str):
        text = unfolded
        if "=?" in unfolded:
            try:
                text = str(make_header(decode_header(unfolded)))
            except Exception:
                pass
        header = super().__new__(cls, text.strip())
        header.specs = [spec for _, spec in getaddresses([unfolded])]
        return header


def _addresses(header) -> list[str]:
    found = []
    specs = header.specs if isinstance(header, _LongAddressList) else [
        address.addr_spec for address in getattr(header, "addresses", ()) or ()]
    for spec in specs:
        spec = clean_text(spec or "").strip()
        if spec and spec != "<>":
            found.append(spec)
    return found


def _date(header, reader: _Reader) -> datetime | None:
    value = getattr(header, "datetime", None)
    if value is None:
        if header is not None and str(header).strip():
            reader.defect(f"unreadable Date header: {str(header)[:80]!r}")
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse a raw message; never raises."""
    reader = _Reader()
    try:
        message = _parse_message(raw)
    except Exception as exc:  # the parser is lenient, but be certain
        return ParsedEmail(text=clean_text(decode_bytes(raw, None)[0]),
                           defects=[f"message could not be parsed: {exc}"])

    parsed = ParsedEmail(message_id=raw_header(raw, "Message-ID"))
    firsts: dict[str, object] = {}
    values: list[tuple[str, object]] = []
    for name, raw_value in message.raw_items():
        value = _header_value(message, name, raw_value, reader)
        parsed.headers.append([clean_text(name), clean_text(str(value))])
        firsts.setdefault(name.lower(), value)
        values.append((name.lower(), value))

    parsed.subject = clean_text(str(firsts.get("subject", ""))).strip()
    from_header = firsts.get("from")
    senders = _addresses(from_header)
    if senders:
        parsed.sender = senders[0]
    elif from_header is not None and str(from_header).strip():
        parsed.sender = clean_text(str(from_header)).strip()
    for name in ("to", "cc"):
        for header_name, value in values:
            if header_name == name:
                parsed.recipients.extend(_addresses(value))
    parsed.sent_at = _date(firsts.get("date"), reader)
    missing = [name for name in REQUIRED_HEADERS if name.lower() not in firsts]
    if missing:
        reader.defect("missing headers: " + ", ".join(missing))

    try:
        reader.read(message)
    except Exception as exc:  # a parser bug on hostile input must not lose the email
        reader.defect(f"body could not be fully read: {type(exc).__name__}: {exc}")
    parsed.text = normalise_whitespace("\n\n".join(t for t in reader.texts if t))
    parsed.attachments = reader.attachments
    parsed.defects = reader.defects
    if not parsed.text and not parsed.attachments:
        reader.defect("empty body")
    return parsed


def is_probably_email(data: bytes) -> bool:
    """Whether a file looks like a raw message: it starts with a header line."""
    head = data[:2048].lstrip(b"\r\n")
    first_line = head.split(b"\n", 1)[0]
    return bool(re.match(rb"^(From |[!-9;-~]+[ \t]*:)", first_line))



def html_body(raw: bytes) -> str | None:
    """The message's main HTML part as text (for display, after sanitising), or None."""
    try:
        message = _parse_message(raw)
        part = message.get_body(preferencelist=("html",))
    except Exception:
        return None
    if part is None or part.get_content_type() != "text/html":
        return None
    payload = _payload_bytes(part, _Reader())
    return clean_text(decode_bytes(payload, _charset(part))[0])
