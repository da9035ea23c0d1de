"""Splitting text into word-sized stream chunks and counting words, for the builtin models.

The chunks keep every character, whitespace included, so that joining them gives back the text
exactly: a streamed answer and the final one can never disagree.
"""

from __future__ import annotations

import re

# A word with the whitespace around it; the `\s+` branch only matches an all-whitespace text.
_CHUNK = re.compile(r"\s*\S+\s*|\s+")


def word_chunks(text: str) -> list[str]:
    """`text` cut into word-sized pieces, `"".join(word_chunks(text)) == text` (no pieces for "")."""
    return _CHUNK.findall(text)


def count_words(*texts: str | None) -> int:
    """Whitespace-separated words across `texts`, at least 1 when any of them is non-empty."""
    words = sum(len(text.split()) for text in texts if text)
    if words == 0 and any(texts):
        return 1
    return words
