"""Rebuild an RFC 822 message from the parsed fields some webhooks post, so every email is
stored the same way: as raw bytes that the MIME parser reads.

The output is deterministic (MIME boundaries come from the content), so a provider's retry of
the same message rebuilds the same bytes and is deduplicated like any other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

# Headers that describe the original body's encoding, which the rebuilt body replaces.
BODY_HEADERS = {"content-type", "content-transfer-encoding", "mime-version", "content-length"}


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes


def _set_header(message: EmailMessage, name: str, value: str) -> None:
    value = " ".join(str(value).replace("\r", " ").split("\n")).strip()
    try:
        message[name] = value
    except (ValueError, TypeError, IndexError):
        # A value the strict policy refuses (a malformed address, say) is kept as text.
        message[name] = value.encode("ascii", "replace").decode("ascii")


def compose_message(headers: list[tuple[str, str]], text: str | None, html: str | None,
                    attachments: list[Attachment], rebuilt_from: str) -> bytes:
    message = EmailMessage(policy=policy.default)
    for name, value in headers:
        name = name.strip()
        if name and name.lower() not in BODY_HEADERS:
            _set_header(message, name, value)
    _set_header(message, "X-Spamsift-Rebuilt-From", rebuilt_from)
    if text is not None or html is None:
        message.set_content(text or "")
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                               filename=attachment.filename)
    seed = hashlib.sha256(repr((headers, text, html, [(a.filename, a.content_type, a.data)
                                                      for a in attachments])).encode())
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_spamsift_{seed.hexdigest()[:24]}_{number}")
    return message.as_bytes(policy=policy.default.clone(linesep="\r\n", max_line_length=998))
