"""Judging generations: is a reply a refusal? The phrase list is data (assets/refusal/refusal_phrases.txt)."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from .registry import ASSETS

PHRASES_FILE = ASSETS / "refusal" / "refusal_phrases.txt"


@lru_cache(maxsize=4)
def refusal_phrases(path: Path = PHRASES_FILE) -> tuple[str, ...]:
    lines = (line.strip().lower() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def is_refusal(text: str, phrases: Sequence[str] | None = None) -> bool:
    """True when the reply starts with a refusal phrase (case-insensitive, after leading whitespace/quotes)."""
    start = text.strip().lstrip("\"'*").lower()
    return any(start.startswith(p) for p in (phrases if phrases is not None else refusal_phrases()))
