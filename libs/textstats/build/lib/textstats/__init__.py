"""Word and sentence statistics over plain text."""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[A-Za-z']+")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def word_counts(text: str) -> Counter[str]:
    return Counter(words(text))


def sentence_count(text: str) -> int:
    return len(_SENTENCE_END.findall(text.strip() + " ")) if text.strip() else 0


def mean_word_length(text: str) -> float:
    found = words(text)
    return sum(map(len, found)) / len(found) if found else 0.0
