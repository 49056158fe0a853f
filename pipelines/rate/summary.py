"""Win / tie / loss of run A against run B per question, with 95 % Wilson intervals, and rater agreement."""

from __future__ import annotations

import html
import json
import math
from itertools import combinations
from typing import Any

from pipelines.rate.pairs import RatingError
from storage.catalog import Catalog
from storage.location import StorageLocation, write_atomic

QUESTIONS = {"quality": "looks better", "text": "follows the text better"}
Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion; ``None`` without trials."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def winner(row: dict[str, Any], question: str) -> str:
    """The run the rater preferred on ``question`` (or ``same``), from the side they picked."""
    answer = row[question]
    if answer == "same":
        return "same"
    right_run = row["run_b"] if row["left_run"] == row["run_a"] else row["run_a"]
    return row["left_run"] if answer == "left" else right_run


def _proportion(count: int, n: int) -> dict[str, Any]:
    interval = wilson(count, n)
    return {"count": count, "rate": count / n if n else None,
            "low": interval[0] if interval else None, "high": interval[1] if interval else None}


def summarise(rows: list[dict[str, Any]], run_a: str, run_b: str) -> dict[str, Any]:
    """Ratings of the pair of runs (either order) as win / tie / loss of ``run_a``, and agreement."""
    rows = [r for r in rows if {r["run_a"], r["run_b"]} == {run_a, run_b}]
    questions = {}
    for question in QUESTIONS:
        winners = [winner(r, question) for r in rows]
        n = len(winners)
        questions[question] = {
            "n": n, "win": _proportion(winners.count(run_a), n), "tie": _proportion(winners.count("same"), n),
            "loss": _proportion(winners.count(run_b), n),
            "agreement": agreement(rows, question),
        }
    return {"run_a": run_a, "run_b": run_b, "n": len(rows), "raters": len({r["rater"] for r in rows}),
            "pairs": len({r["pair_id"] for r in rows}), "questions": questions}


def agreement(rows: list[dict[str, Any]], question: str) -> dict[str, Any]:
    """How often two raters who saw the same pair gave the same verdict (every two raters of a pair count once)."""
    by_pair: dict[str, dict[str, str]] = {}
    for row in rows:
        by_pair.setdefault(row["pair_id"], {})[row["rater"]] = winner(row, question)
    comparisons = [(x, y) for verdicts in by_pair.values() for x, y in combinations(verdicts.values(), 2)]
    agreed = sum(x == y for x, y in comparisons)
    shared = sum(len(verdicts) > 1 for verdicts in by_pair.values())
    return {"pairs": shared, "comparisons": len(comparisons), **_proportion(agreed, len(comparisons))}


def human_preference(catalog: Catalog, runs: list[str]) -> list[dict[str, Any]]:
    """A summary for every two of ``runs`` that raters compared, in the order the runs are given."""
    rows = catalog.read("ratings").to_pylist()
    if not rows:
        return []
    summaries = [summarise(rows, a, b) for a, b in combinations(runs, 2)]
    return [s for s in summaries if s["n"]]


def _cell(part: dict[str, Any]) -> str:
    if part["rate"] is None:
        return "-"
    return f"{part['rate']:.0%} [{part['low']:.0%}, {part['high']:.0%}] ({part['count']})"


def table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per question: what the report's table and the Prefect artifact show."""
    return [
        {"question": f"which {label}", "n": q["n"], f"{summary['run_a']} wins": _cell(q["win"]), "same": _cell(q["tie"]),
         f"{summary['run_b']} wins": _cell(q["loss"]),
         "rater agreement": _cell(q["agreement"]) + f" over {q['agreement']['pairs']} shared pairs"
         if q["agreement"]["comparisons"] else "no pair rated twice"}
        for q, label in ((summary["questions"][name], label) for name, label in QUESTIONS.items())
    ]


NOTE = "Each cell: share [95 % Wilson interval] (count)."


def render_markdown(summaries: list[dict[str, Any]]) -> str:
    lines = ["## Human preference", "", NOTE]
    for summary in summaries:
        rows = table_rows(summary)
        header = list(rows[0])
        lines += ["", f"### {summary['run_a']} vs {summary['run_b']}: {summary['n']} ratings by {summary['raters']} "
                      f"rater(s) of {summary['pairs']} pairs", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_html(summaries: list[dict[str, Any]]) -> str:
    esc = html.escape
    parts = [f"<h2>Human preference</h2><p>{NOTE}</p>"]
    for summary in summaries:
        rows = table_rows(summary)
        header = list(rows[0])
        parts.append(
            f"<h3>{esc(summary['run_a'])} vs {esc(summary['run_b'])}: {summary['n']} ratings by {summary['raters']} "
            f"rater(s) of {summary['pairs']} pairs</h3><table class='preference'><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{esc(str(row[h]))}</td>" for h in header) + "</tr>" for row in rows)
            + "</tbody></table>")
    return "".join(parts)


def write_summary(location: StorageLocation, runs: list[str]) -> tuple[list[dict[str, Any]], str, str]:
    """``reports/<runs>/ratings.{md,json}`` on the storage root: the summaries and the two paths."""
    summaries = human_preference(Catalog(location), runs)
    if not summaries:
        raise RatingError(f"no ratings of {' vs '.join(runs)} yet; collect some with `t2v rate --runs {' '.join(runs)}`")
    markdown, document = (location.path("reports", "+".join(runs), f"ratings.{suffix}") for suffix in ("md", "json"))
    write_atomic(location, markdown, render_markdown(summaries).encode())
    write_atomic(location, document, json.dumps({"runs": runs, "human_preference": summaries}, indent=2).encode())
    return summaries, markdown, document
