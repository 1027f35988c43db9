"""Text normalisation for the models: URLs, addresses, numbers and long tokens as
placeholders.

Spam varies exactly these parts from copy to copy (tracking links, sender addresses, prices,
order numbers, base64 and hash debris), so a model that reads them verbatim learns many rare
tokens and a word-piece encoder spends its window on fragments. A URL keeps its host
("URL example.com"), which still says where the link goes.
"""

from __future__ import annotations

import re

_URL = re.compile(r"\b(?:https?://|www\.)([^\s/<>\"'?#:]+)[^\s<>\"']*", re.I)
_ADDRESS = re.compile(r"\b[\w.+-]+@([\w-]+(?:\.[\w-]+)+)\b")
_LONG_TOKEN = re.compile(r"\S{30,}")
_NUMBER = re.compile(r"(?<![\w.])\d(?:[\d,.]*\d)?(?!\w|[.,]\d)")


def normalise_text(text: str) -> str:
    """The text with placeholders: ``URL host``, ``EMAIL domain``, ``LONGTOKEN``, ``NUM``."""
    text = _URL.sub(lambda m: f"URL {m.group(1).lower().removeprefix('www.')}", text)
    text = _ADDRESS.sub(lambda m: f"EMAIL {m.group(1).lower()}", text)
    text = _LONG_TOKEN.sub("LONGTOKEN", text)
    return _NUMBER.sub("NUM", text)
