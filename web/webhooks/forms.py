"""Form posts read as bytes: every field exactly as the provider sent it.

Flask's ``request.form`` decodes each field as UTF-8 (bytes that are not UTF-8 become
U+FFFD for good) and caps each field at ``MAX_FORM_MEMORY_SIZE``; a provider's raw message
or a field in its own declared charset needs neither. Multipart bodies go through
Werkzeug's sans-IO decoder, url-encoded ones through the standard library, both undecoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

MAX_PARTS = 1000


class FormError(ValueError):
    """The body is not a form this endpoint can read."""


@dataclass(frozen=True)
class FormField:
    data: bytes
    filename: str | None = None  # set for file parts
    content_type: str | None = None  # a file part's declared type

    def text(self) -> str:
        """The field as UTF-8 text (what the provider promises for its own fields)."""
        return self.data.decode("utf-8", "replace")


def form_fields(body: bytes, content_type: str) -> dict[str, FormField]:
    """The fields of a ``multipart/form-data`` or url-encoded body, the first of each name."""
    mimetype, options = parse_options_header(content_type)
    if mimetype == "multipart/form-data":
        boundary = options.get("boundary", "")
        if not boundary:
            raise FormError("multipart/form-data without a boundary")
        return _multipart(body, boundary.encode("latin-1"))
    if mimetype == "application/x-www-form-urlencoded":
        # latin-1 maps each percent-decoded byte to one character and back, losslessly.
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1",
                          max_num_fields=MAX_PARTS)
        fields: dict[str, FormField] = {}
        for name, value in pairs:
            fields.setdefault(name.encode("latin-1").decode("utf-8", "replace"),
                              FormField(value.encode("latin-1")))
        return fields
    raise FormError(f"expected a form post, got {mimetype or 'no content type'}")


def _multipart(body: bytes, boundary: bytes) -> dict[str, FormField]:
    decoder = MultipartDecoder(boundary, max_form_memory_size=None, max_parts=MAX_PARTS)
    try:
        decoder.receive_data(body)
        decoder.receive_data(None)
        fields: dict[str, FormField] = {}
        name, chunks, part = None, [], None
        while True:
            event = decoder.next_event()
            if isinstance(event, (Field, File)):
                name, chunks, part = event.name, [], event
            elif isinstance(event, Data):
                chunks.append(event.data)
                if not event.more_data and name is not None:
                    filename = part.filename if isinstance(part, File) else None
                    declared = parse_options_header(part.headers.get("Content-Type"))[0]
                    fields.setdefault(name, FormField(b"".join(chunks), filename,
                                                      declared if filename is not None
                                                      else None))
            elif isinstance(event, (Epilogue, NeedData)):
                return fields
    except (ValueError, RequestEntityTooLarge) as exc:  # broken body, or too many parts
        raise FormError(f"unreadable multipart body: {exc}") from exc
