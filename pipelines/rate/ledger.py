"""Who rated what: the ``ratings`` table is the state, so a restarted server resumes every rater."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from pipelines.rate.pairs import ANSWERS, Pair, RatingError, rating_id
from storage.catalog import Catalog

MAX_RATER_LENGTH = 64


@dataclass(frozen=True)
class Shown:
    pair: Pair
    left_run: str
    shown_at: float


class Ledger:
    """Hands each rater the pairs they have not answered, in random order with a random left side,
    and writes each answer to the catalog before it confirms it."""

    def __init__(self, catalog: Catalog, pairs: list[Pair], seed: int | None = None, run_id: str = "rate"):
        self.catalog, self.pairs, self.run_id = catalog, {pair.pair_id: pair for pair in pairs}, run_id
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._answered: dict[str, set[str]] = {}
        for row in catalog.read("ratings", columns=["rater", "pair_id"]).to_pylist():
            self._answered.setdefault(row["rater"], set()).add(row["pair_id"])
        self._shown: dict[str, Shown] = {}  # the pair on each rater's screen, so a reload shows it again

    def progress(self, rater: str) -> tuple[int, int]:
        return len(self._answered.get(rater, set()) & self.pairs.keys()), len(self.pairs)

    def next(self, rater: str) -> Shown | None:
        rater = check_rater(rater)
        with self._lock:
            shown = self._shown.get(rater)
            if shown is not None:
                return shown
            left = [pid for pid in self.pairs if pid not in self._answered.get(rater, set())]
            if not left:
                return None
            pair = self.pairs[self._rng.choice(left)]
            shown = Shown(pair, self._rng.choice((pair.run_a, pair.run_b)), time.time())
            self._shown[rater] = shown
            return shown

    def answer(self, rater: str, pair_id: str, left_run: str, quality: str, text: str,
               shown_at: float | None = None) -> dict[str, Any]:
        """Record one answer; the shown pair's side and time win over the page's when the server knows them."""
        rater = check_rater(rater)
        pair = self.pairs.get(pair_id)
        if pair is None:
            raise RatingError(f"unknown pair {pair_id!r}")
        for name, value in (("quality", quality), ("text", text)):
            if value not in ANSWERS:
                raise RatingError(f"{name} must be one of {', '.join(ANSWERS)}, not {value!r}")
        with self._lock:
            if pair_id in self._answered.get(rater, set()):
                raise RatingError(f"{rater} already rated this pair")
            shown = self._shown.get(rater)
            if shown is not None and shown.pair.pair_id == pair_id:
                left_run, shown_at = shown.left_run, shown.shown_at
            elif left_run not in (pair.run_a, pair.run_b):  # shown by a server that was restarted since
                raise RatingError(f"left_run must be {pair.run_a!r} or {pair.run_b!r}, not {left_run!r}")
            now = time.time()
            row = {
                "id": rating_id(rater, pair_id), "pair_id": pair_id, "rater": rater,
                "run_a": pair.run_a, "run_b": pair.run_b, "generation_a": pair.generation_a,
                "generation_b": pair.generation_b, "prompt": pair.prompt, "left_run": left_run,
                "quality": quality, "text": text, "shown_at": float(shown_at or now), "answered_at": now,
            }
            self.catalog.write("ratings", [row], run_id=self.run_id, note=f"answer of {rater}")
            self._answered.setdefault(rater, set()).add(pair_id)
            self._shown.pop(rater, None)
            return row


def check_rater(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_RATER_LENGTH or not name.isprintable():
        raise RatingError(f"a rater name has 1 to {MAX_RATER_LENGTH} printable characters")
    return name
