"""Overlapping token windows over a text, mapped back to character offsets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextChunk:
    ordinal: int
    text: str
    char_start: int
    char_end: int


def token_windows(n_tokens: int, size: int, overlap: int, max_windows: int
                  ) -> list[tuple[int, int]]:
    """[start, end) token ranges of at most ``size`` tokens, each sharing ``overlap`` tokens
    with the previous one; at least one window, even for an empty text."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need size > overlap >= 0, got size={size}, overlap={overlap}")
    step = size - overlap
    windows = [(0, min(size, n_tokens))]
    while windows[-1][1] < n_tokens and len(windows) < max_windows:
        start = windows[-1][0] + step
        windows.append((start, min(start + size, n_tokens)))
    return windows


def chunk_text(text: str, offsets: list[tuple[int, int]], size: int, overlap: int,
               max_windows: int) -> list[TextChunk]:
    """Split ``text`` by the character ``offsets`` of its tokens (special tokens excluded)."""
    if not offsets:
        return [TextChunk(0, text, 0, len(text))]
    chunks = []
    for ordinal, (start, end) in enumerate(token_windows(len(offsets), size, overlap,
                                                         max_windows)):
        char_start, char_end = offsets[start][0], offsets[end - 1][1]
        chunks.append(TextChunk(ordinal, text[char_start:char_end], char_start, char_end))
    return chunks
