"""Stable row ids: the same content always gets the same id, on every machine and run."""

from __future__ import annotations

import hashlib


def stable_id(*parts: object) -> str:
    """32 hex chars of sha256 over the parts (``None`` counts as empty)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
