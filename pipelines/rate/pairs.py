"""What raters compare: for each prompt, the newest clip of run A beside the newest clip of run B."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.catalog import Catalog
from storage.errors import T2VError
from storage.ids import stable_id

ANSWERS = ("left", "right", "same")


class RatingError(T2VError):
    """Nothing to rate, or an answer that cannot be recorded."""


@dataclass(frozen=True)
class Pair:
    pair_id: str
    prompt: str
    long_video: bool
    run_a: str
    run_b: str
    generation_a: str
    generation_b: str
    blob_a: str
    blob_b: str

    def blob(self, generation: str) -> str:
        return {self.generation_a: self.blob_a, self.generation_b: self.blob_b}[generation]

    def generation(self, run: str) -> str:
        return self.generation_a if run == self.run_a else self.generation_b


def pair_id(generation_a: str, generation_b: str) -> str:
    """The same two clips are one pair whichever run is named first."""
    return stable_id("pair", *sorted((generation_a, generation_b)))


def rating_id(rater: str, pair: str) -> str:
    return stable_id("rating", rater, pair)


def _newest(catalog: Catalog, run: str) -> dict[tuple[str, bool], dict[str, Any]]:
    """The newest generation of ``run`` per (prompt, long video)."""
    newest: dict[tuple[str, bool], dict[str, Any]] = {}
    for row in catalog.read("generations").to_pylist():
        key = (row["prompt"], row["long_video"])
        if row["run"] == run and (key not in newest or row["created_at"] > newest[key]["created_at"]):
            newest[key] = row
    return newest


def missing_prompts(catalog: Catalog, run: str, prompts: list[str]) -> list[str]:
    """The prompts ``run`` has no (short) generation of yet."""
    have = {prompt for prompt, long in _newest(catalog, run) if not long}
    return [prompt for prompt in dict.fromkeys(prompts) if prompt not in have]


def build_pairs(catalog: Catalog, runs: tuple[str, str], prompts: list[str] | None = None) -> list[Pair]:
    """One pair per prompt both runs generated (only ``prompts`` when given), in prompt order."""
    run_a, run_b = runs
    if run_a == run_b:
        raise RatingError(f"--runs needs two different runs, got {run_a!r} twice")
    newest_a, newest_b = _newest(catalog, run_a), _newest(catalog, run_b)
    keys = [key for key in newest_a if key in newest_b and (prompts is None or key[0] in prompts)]
    if not keys:
        which = "the given prompts" if prompts is not None else "any prompt"
        raise RatingError(f"runs {run_a!r} and {run_b!r} have no generations of {which} in common; "
                          f"run `t2v generate` for both, or give --prompts")
    pairs = []
    for prompt, long in sorted(keys, key=lambda key: (prompts.index(key[0]) if prompts else 0, key)):
        a, b = newest_a[(prompt, long)], newest_b[(prompt, long)]
        pairs.append(Pair(pair_id(a["id"], b["id"]), prompt, long, run_a, run_b, a["id"], b["id"], a["blob"], b["blob"]))
    return pairs
