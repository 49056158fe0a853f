"""Evaluation reports: one self-contained HTML page per set of runs, plus Markdown and JSON.

The page holds the metrics table with the papers' reference numbers beside ours (and
the chance level beside the shapes judge's accuracies), inline SVG plots of each metric
over training steps, and the generated clips as base64 GIFs grouped by prompt, one per
evaluated checkpoint, upscaled with nearest-neighbour so 32x32 clips are visible, with what
the shapes judge reads in each (and the run's clips from ``t2v generate``, long videos
marked), and, where raters compared the runs (``t2v rate``), their human preference with
95 % intervals, so it opens anywhere with no other files. Metrics measured with random-init
feature networks are labelled: they check the plumbing, not the model, and are not
comparable to published numbers.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from einops import repeat

from pipelines.evaluate.shapes_judge import CHANCE, names_an_attribute, read_clip
from pipelines.rate import summary as preference
from pipelines.shapes.world import parse_prompt
from storage.blobs import BlobStore
from storage.catalog import Catalog, CatalogError
from storage.location import StorageLocation, write_atomic
from storage.media import read_frames, write_gif

# (prompt set, metric) -> published zero-shot results (REFERENCE.md section 3).
PAPER_REFERENCES: dict[tuple[str, str], dict[str, float]] = {
    ("ucf101", "fvd"): {"Make-A-Video": 367.23, "VidRD": 363.19, "LaVie": 526.30, "VideoLDM": 550.61, "CogVideo": 701.59},
    ("ucf101", "is"): {"VidRD": 39.37, "VideoLDM": 33.45, "Make-A-Video": 33.00, "CogVideo": 25.27},
    ("msrvtt", "clipsim"): {"Make-A-Video": 0.3049, "LaVie": 0.2949, "VideoLDM": 0.2929},
}
RANDOM_INIT_LABEL = "random-init network (not comparable to papers)"
_PLOT_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
# Clips are shown at least this many pixels on their short side (nearest-neighbour upscaling).
DISPLAY_SIZE = 128
# Clips per prompt at most, from checkpoints spread over training (first and last included).
MAX_CHECKPOINT_CLIPS = 4


@dataclass
class ReportPaths:
    html: str
    markdown: str
    json: str


def load_results(catalog: Catalog, runs: list[str]) -> list[dict[str, Any]]:
    """``eval_results`` rows of ``runs`` (latest table version), by run, step, then time."""
    rows = [row for row in catalog.read("eval_results").to_pylist() if row["run"] in runs]
    missing = sorted(set(runs) - {row["run"] for row in rows})
    if missing:
        raise CatalogError(f"no evaluation results for run(s): {', '.join(missing)}; run `t2v evaluate` first")
    return sorted(rows, key=lambda r: (runs.index(r["run"]), r["step"] or 0, r["created_at"], r["metric"]))


def references(row: dict[str, Any]) -> str:
    """Published numbers for the row's protocol, or the chance level of a shapes-judge accuracy."""
    if row["metric"] in CHANCE:
        return f"chance {CHANCE[row['metric']]:.0%}"
    papers = PAPER_REFERENCES.get((row["prompt_set"], row["metric"]), {})
    return "; ".join(f"{paper} {value:g}" for paper, value in papers.items())


def network_label(row: dict[str, Any]) -> str:
    if row["metric"] in CHANCE or row["metric"] == "consistency":
        return "weight-free shapes judge"
    return RANDOM_INIT_LABEL if row["random_init"] else "trained weights"


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the metrics table shows, one dict per result (also the JSON's ``metrics``)."""
    return [
        {
            "run": r["run"], "step": r["step"], "checkpoint": r["checkpoint"], "prompt_set": r["prompt_set"],
            "metric": r["metric"], "protocol": r["protocol"], "value": r["value"], "std": r["std"],
            "num_samples": r["num_samples"], "num_real": r["num_real"], "network": network_label(r),
            "random_init": r["random_init"], "papers": references(r),
        }
        for r in results
    ]


def latest_clips(results: list[dict[str, Any]], max_prompts: int) -> list[dict[str, Any]]:
    """The clips of the newest evaluation of each (run, prompt set, checkpoint), grouped by prompt:
    per run and prompt set its first ``max_prompts`` prompts, each with one clip per checkpoint by step
    (at most ``MAX_CHECKPOINT_CLIPS`` checkpoints, spread over training)."""
    newest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in results:
        key = (row["run"], row["prompt_set"], row["checkpoint"])
        if key not in newest or row["created_at"] > newest[key]["created_at"]:
            newest[key] = row
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (run, prompt_set, _), row in newest.items():
        groups.setdefault((run, prompt_set), []).append(row)
    clips = []
    for (run, prompt_set), rows in groups.items():
        rows.sort(key=lambda r: (r["step"] is None, r["step"] or 0, r["created_at"]))
        if len(rows) > MAX_CHECKPOINT_CLIPS:
            rows = [rows[i] for i in np.linspace(0, len(rows) - 1, MAX_CHECKPOINT_CLIPS).round().astype(int)]
        prompts = list(dict.fromkeys(rows[-1]["prompts"]))[:max_prompts]
        for prompt in prompts:
            for row in rows:
                step = "" if row["step"] is None else f"step {row['step']}, "
                clips += [{"run": run, "prompt_set": prompt_set, "step": row["step"], "prompt": prompt, "seed": seed,
                           "blob": blob, "fps": row["fps"], "note": f"{run}, {step}seed {seed}"}
                          for text, seed, blob in zip(row["prompts"], row["seeds"], row["clip_blobs"]) if text == prompt]
    return clips


def latest_generations(catalog: Catalog, runs: list[str], max_clips: int) -> list[dict[str, Any]]:
    """The newest ``generations`` rows of each run (``t2v generate``), long videos included."""
    if catalog.latest("generations") is None:
        return []
    rows = sorted((r for r in catalog.read("generations").to_pylist() if r["run"] in runs),
                  key=lambda r: (runs.index(r["run"]), -r["created_at"], r["seed"]))
    kept = [row for run in runs for row in [r for r in rows if r["run"] == run][:max_clips]]
    return [
        {"run": r["run"], "prompt": r["prompt"], "seed": r["seed"], "blob": r["blob"], "fps": r["fps"],
         "long_video": r["long_video"], "num_frames": r["num_frames"],
         "note": f"{r['run']}, seed {r['seed']}, {r['num_frames']} frames" + (", long video (VidRD)" if r["long_video"] else "")}
        for r in kept
    ]


def display_frames(frames: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """uint8 ``(f, h, w, 3)`` frames repeated pixel by pixel until the short side reaches ``size``."""
    factor = max(1, math.ceil(size / min(frames.shape[1:3])))
    return repeat(frames, "f h w c -> f (h a) (w b) c", a=factor, b=factor)


def gif_data_uri(frames: np.ndarray, fps: float) -> str:
    """Frames as an inline ``data:image/gif`` URI, upscaled for display."""
    buffer = io.BytesIO()
    write_gif(buffer, display_frames(frames), fps)
    return "data:image/gif;base64," + base64.b64encode(buffer.getvalue()).decode()


def judge_note(prompt: str, frames: np.ndarray) -> str:
    """What the shapes judge reads in a clip, each asked-for word marked right or wrong; '' for other prompts."""
    if not names_an_attribute(prompt):
        return ""
    expected, reading = parse_prompt(prompt), read_clip(frames)
    words = []
    for attribute in ("colour", "shape", "direction"):
        wanted, seen = getattr(expected, attribute), getattr(reading, attribute)
        if wanted is not None:
            words.append(f"{seen or 'no ' + attribute} {'✓' if seen == wanted else '✗'}")
    return "judge reads: " + ", ".join(words)


def svg_plot(title: str, series: dict[str, list[tuple[float, float]]], width: int = 360, height: int = 220,
             y_range: tuple[float, float] | None = None, chance: float | None = None) -> str:
    """A line chart of (step, value) points per run, as inline SVG; ``y_range`` fixes the value axis
    (accuracies: 0 to 1) and ``chance`` draws a dashed line at the chance level."""
    points = [p for line in series.values() for p in line]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    if y_range is not None:
        y_low, y_high = y_range
    else:
        y_low, y_high = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    left, right, top, bottom = 50, 10, 24, 30

    def place(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_low) / (x_high - x_low) * (width - left - right)
        py = height - bottom - (y - y_low) / (y_high - y_low) * (height - top - bottom)
        return px, py

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10">{y_high:.4g}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end" font-size="10">{y_low:.4g}</text>',
        f'<text x="{left}" y="{height - 12}" font-size="10">step {x_low:g}</text>',
        f'<text x="{width - right}" y="{height - 12}" text-anchor="end" font-size="10">{x_high:g}</text>',
    ]
    if chance is not None:
        _, chance_y = place(x_low, chance)
        parts.append(f'<line class="chance" x1="{left}" y1="{chance_y:.1f}" x2="{width - right}" y2="{chance_y:.1f}" '
                     f'stroke="#999" stroke-dasharray="4 3"/><text x="{left + 4}" y="{chance_y - 3:.1f}" '
                     f'font-size="10" fill="#777">chance {chance:.0%}</text>')
    for number, (colour, (run, line)) in enumerate(zip(_PLOT_COLOURS * len(series), series.items())):
        parts.append(f'<text x="{width - right}" y="{top + 12 * (number + 1)}" text-anchor="end" font-size="10" '
                     f'fill="{colour}">{html.escape(run)}</text>')  # legend
        placed = [place(x, y) for x, y in sorted(line)]
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in placed)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}">'
                     f"<title>{html.escape(run)}</title></polyline>")
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in placed]
    parts.append("</svg>")
    return "".join(parts)


def plots(results: list[dict[str, Any]]) -> list[str]:
    """One SVG per (prompt set, metric) with each run's values over training steps."""
    charts: dict[tuple[str, str, str], dict[str, list[tuple[float, float]]]] = {}
    for row in results:
        if row["step"] is not None:
            key = (row["prompt_set"], row["metric"], row["protocol"])
            charts.setdefault(key, {}).setdefault(row["run"], []).append((row["step"], row["value"]))
    return [
        svg_plot(f"{prompt_set}: {metric} ({protocol})", series, chance=CHANCE.get(metric),
                 y_range=(0.0, 1.0) if metric in CHANCE or metric == "consistency" else None)
        for (prompt_set, metric, protocol), series in charts.items()
    ]


def render_html(title: str, metrics: list[dict[str, Any]], charts: list[str], clips: list[dict[str, Any]],
                samples: list[dict[str, Any]], human: list[dict[str, Any]]) -> str:
    esc = html.escape
    header = ["run", "step", "prompt set", "metric", "protocol", "value", "n", "real n", "feature network", "papers / chance"]
    body = "".join(
        f'<tr class="{"random-init" if m["random_init"] else "weights"}"><td>{esc(m["run"])}</td><td>{m["step"] if m["step"] is not None else "-"}</td>'
        f'<td>{esc(m["prompt_set"])}</td><td>{esc(m["metric"])}</td><td>{esc(m["protocol"])}</td>'
        f'<td>{_value(m)}</td><td>{m["num_samples"]}</td><td>{m["num_real"] if m["num_real"] is not None else "-"}</td>'
        f'<td>{esc(m["network"])}</td><td>{esc(m["papers"]) or "-"}</td></tr>'
        for m in metrics
    )

    def figure(clip: dict[str, Any], caption: str) -> str:
        judged = f'<br><small class="judge">{esc(clip["judge"])}</small>' if clip["judge"] else ""
        return (f'<figure class="clip"><img src="{clip["uri"]}" alt="{esc(clip["prompt"])}">'
                f'<figcaption>{caption}<br><small>{esc(clip["note"])}</small>{judged}</figcaption></figure>')

    def figures(items: list[dict[str, Any]]) -> str:
        return "".join(figure(c, esc(c["prompt"])) for c in items)

    def by_prompt(items: list[dict[str, Any]]) -> str:
        """One row per (run, prompt set, prompt): its clip at each evaluated checkpoint."""
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for clip in items:
            groups.setdefault((clip["run"], clip["prompt_set"], clip["prompt"]), []).append(clip)
        return "".join(
            f'<section class="prompt"><h3>{esc(prompt)} <small>({esc(run)}, {esc(prompt_set)})</small></h3>'
            f'<div class="clips">{"".join(figure(c, "step " + str(c["step"]) if c["step"] is not None else esc(c["prompt"])) for c in group)}</div></section>'
            for (run, prompt_set, prompt), group in groups.items()
        )

    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "tr.random-init td{background:#fff4e5}.clips{display:flex;flex-wrap:wrap;gap:12px}"
        ".clip{margin:0;max-width:270px}.clip img{image-rendering:pixelated;max-width:256px;height:auto}"
        ".prompt h3{margin:.8em 0 .3em;font-size:1em}.judge{color:#555}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style></head><body>"
        f"<h1>{esc(title)}</h1><h2>Metrics</h2>"
        f"<p>Rows shaded orange were measured with {RANDOM_INIT_LABEL}.</p>"
        f"<table id='metrics'><thead><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr></thead><tbody>{body}</tbody></table>"
        + (preference.render_html(human) if human else "")
        + f"<h2>Over training</h2><div id='plots'>{''.join(charts) or '<p>No training steps recorded.</p>'}</div>"
        f"<h2>Generated clips</h2><div id='clips'>{by_prompt(clips)}</div>"
        + (f"<h2>Samples from prompts</h2><div id='samples' class='clips'>{figures(samples)}</div>" if samples else "")
        + "</body></html>"
    )


def render_markdown(title: str, metrics: list[dict[str, Any]], clips: list[dict[str, Any]],
                    samples: list[dict[str, Any]], human: list[dict[str, Any]]) -> str:
    lines = [f"# {title}", "", "| run | step | prompt set | metric | protocol | value | n | feature network | papers / chance |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {m['run']} | {m['step'] if m['step'] is not None else '-'} | {m['prompt_set']} | {m['metric']} | "
        f"{m['protocol']} | {_value(m)} | {m['num_samples']} | {m['network']} | {m['papers'] or '-'} |"
        for m in metrics
    ]
    if human:
        lines += ["", preference.render_markdown(human).rstrip("\n")]
    lines += ["", "## Generated clips", ""] + [
        f"- {c['prompt']} ({'; '.join(filter(None, (c['note'], c['judge'])))}) — `{c['blob']}`" for c in clips]
    if samples:
        lines += ["", "## Samples from prompts", ""] + [f"- {c['prompt']} ({c['note']}) — `{c['blob']}`" for c in samples]
    return "\n".join(lines) + "\n"


def _value(metric: dict[str, Any]) -> str:
    if metric["metric"] in CHANCE:
        return f"{metric['value']:.0%}"
    value = f"{metric['value']:.4g}"
    return f"{value} ± {metric['std']:.2g}" if metric["std"] is not None else value


def write_report(location: StorageLocation, runs: list[str], max_clips: int = 16) -> ReportPaths:
    """Write ``reports/<runs>/report.{html,md,json}`` on the storage root and return their paths."""
    catalog = Catalog(location)
    results = load_results(catalog, runs)
    metrics = table_rows(results)
    blobs = BlobStore(location)

    def with_gifs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shown = []
        for item in items:
            with blobs.local_path(item["blob"], suffix=".mp4") as path:
                frames = read_frames(path)
            shown.append({**item, "uri": gif_data_uri(frames, item["fps"]), "judge": judge_note(item["prompt"], frames)})
        return shown

    clips = with_gifs(latest_clips(results, max_clips))
    samples = with_gifs(latest_generations(catalog, runs, max_clips))
    human = preference.human_preference(catalog, runs)
    title = f"Evaluation: {', '.join(runs)}"
    folder = ("reports", "+".join(runs))
    paths = ReportPaths(*(location.path(*folder, f"report.{suffix}") for suffix in ("html", "md", "json")))
    document = {"runs": runs, "metrics": metrics, "human_preference": human,
                **{name: [{k: v for k, v in c.items() if k != "uri"} for c in items]
                   for name, items in (("clips", clips), ("samples", samples))}}
    write_atomic(location, paths.html, render_html(title, metrics, plots(results), clips, samples, human).encode())
    write_atomic(location, paths.markdown, render_markdown(title, metrics, clips, samples, human).encode())
    write_atomic(location, paths.json, json.dumps(document, indent=2).encode())
    return paths
