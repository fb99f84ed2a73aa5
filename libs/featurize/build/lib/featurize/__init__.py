"""Numeric features of documents, built on textstats."""

from __future__ import annotations

import numpy as np
import textstats


def features(text: str) -> np.ndarray:
    """[word count, sentence count, mean word length, distinct-word ratio]."""
    found = textstats.words(text)
    distinct = len(set(found)) / len(found) if found else 0.0
    return np.array([len(found), textstats.sentence_count(text), textstats.mean_word_length(text), distinct])


def matrix(texts: list[str]) -> np.ndarray:
    return np.vstack([features(t) for t in texts]) if texts else np.zeros((0, 4))
