"""Rebuild an RFC 822 message from the parsed fields some webhooks post, so every email is
stored the same way: as raw bytes that the MIME parser reads.

Whatever a provider posts, composing never raises: header lines are written as given (two
Cc headers stay two, an empty ``Message-Id: <>`` stays empty, text outside ASCII is
RFC 2047 encoded), forwarded messages stay ``message/rfc822`` parts (RFC 2046 allows them no
base64), and inline parts keep their Content-ID. The output is deterministic (MIME
boundaries come from the content), so a provider's retry rebuilds the same bytes; the
content digest names the message by what a reader and a model see, so a retry whose
rebuilt bytes differ still matches and a different message never does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formataddr, getaddresses

# Headers that describe the original body's encoding, which the rebuilt body replaces.
BODY_HEADERS = {"content-type", "content-transfer-encoding", "mime-version", "content-length"}
ADDRESS_HEADERS = {"from", "to", "cc", "bcc", "reply-to", "sender", "resent-from",
                   "resent-to", "resent-cc"}
# What identifies one message across a provider's retries, besides its body and attachments.
IDENTITY_HEADERS = ("message-id", "from", "subject")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_OUTPUT_POLICY = policy.default.clone(linesep="\r\n", max_line_length=998)


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes
    content_id: str | None = None  # "<id@host>": an inline part the HTML refers to


@dataclass(frozen=True)
class Rebuilt:
    raw: bytes
    content_digest: bytes  # SHA-256 of identity headers, bodies and attachments


def compose_message(headers: list[tuple[str, str]], text: str | None, html: str | None,
                    attachments: list[Attachment], rebuilt_from: str) -> Rebuilt:
    """The message as RFC 822 bytes; an empty ``html`` counts as none."""
    html = html or None
    lines = [_header_line(name, value) for name, value in headers
             if _HEADER_NAME.fullmatch(name.strip())
             and name.strip().lower() not in BODY_HEADERS]
    lines.append(_header_line("X-Spamsift-Rebuilt-From", rebuilt_from))
    digest = _content_digest(headers, text, html, attachments)
    body = _body(text, html, attachments, digest.hex()[:24])
    return Rebuilt(b"".join(lines) + body.as_bytes(policy=_OUTPUT_POLICY), digest)


def _header_line(name: str, value: str) -> bytes:
    name = name.strip()
    # Unfold (a line break before white space goes), and no other line break survives.
    value = _LINE_BREAK.sub(" ", _FOLD.sub("", str(value).replace("\x00", ""))).strip()
    if value.isascii():
        return f"{name}: {value}\r\n".encode("ascii")
    if name.lower() in ADDRESS_HEADERS:
        encoded = _encoded_addresses(value)
        if encoded is not None:
            return f"{name}: {encoded}\r\n".encode("ascii")
    try:
        encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    except Exception:  # the stdlib folder gives up on some input: keep the words readable
        encoded = value.encode("ascii", "replace").decode("ascii")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _encoded_addresses(value: str) -> str | None:
    """Display names encoded, addresses left readable; None when the list is not parseable."""
    try:
        pairs = getaddresses([value])
        if not pairs or any(not address.isascii() for _, address in pairs):
            return None
        return ", ".join(formataddr((name, address), charset="utf-8") for name, address in pairs)
    except Exception:
        return None


def _body(text: str | None, html: str | None, attachments: list[Attachment],
          boundary_seed: str) -> EmailMessage:
    body = EmailMessage(policy=policy.default)
    if text is not None or html is None:
        body.set_content(text or "")
        if html is not None:
            body.add_alternative(html, subtype="html")
    else:
        body.set_content(html, subtype="html")
    for attachment in attachments:
        _attach(body, attachment)
    for number, part in enumerate(body.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_spamsift_{boundary_seed}_{number}")
    return body


def _attach(body: EmailMessage, attachment: Attachment) -> None:
    maintype, _, subtype = attachment.content_type.strip().lower().partition("/")
    if not (maintype and subtype) or not _HEADER_NAME.fullmatch(maintype + subtype):
        maintype, subtype = "application", "octet-stream"
    # Providers list inline parts (an image the HTML shows, a list footer) as attachments
    # too: a part with a Content-ID or without a file name was inline.
    inline = bool(attachment.content_id) or not attachment.filename
    options = {"filename": attachment.filename or None, "cid": attachment.content_id or None,
               "disposition": "inline" if inline else "attachment"}
    try:
        if (maintype, subtype) == ("message", "rfc822"):
            forwarded = BytesParser(policy=policy.default).parsebytes(attachment.data)
            body.add_attachment(forwarded, **options)
        elif maintype == "message":
            # Other message/* types (delivery reports) are header blocks: no base64 either.
            body.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                                cte="8bit", **options)
        else:
            body.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                                **options)
    except Exception:  # a name or id the strict policy refuses: keep the bytes anyway
        body.add_attachment(attachment.data, maintype="application", subtype="octet-stream",
                            disposition=options["disposition"])


def _content_digest(headers: list[tuple[str, str]], text: str | None, html: str | None,
                    attachments: list[Attachment]) -> bytes:
    digest = hashlib.sha256()

    def add(value: str | bytes | None) -> None:
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        data = data if data is not None else b"\xff"  # None differs from ""
        digest.update(len(data).to_bytes(8, "big") + data)

    for wanted in IDENTITY_HEADERS:
        add(next((" ".join(str(v).split()) for n, v in headers
                  if n.strip().lower() == wanted), None))
    add(text)
    add(html)
    for attachment in attachments:
        add(attachment.filename)
        add(attachment.content_type)
        add(attachment.content_id)
        add(attachment.data)
    return digest.digest()
