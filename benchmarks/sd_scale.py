"""Training at Stable Diffusion width: one step of each stage and variant from SD 1.5 / 2.1 folders.

Builds SD 1.5- and 2.1-config folders in diffusers layout with random weights from the published
configs (UNet 860M, text encoder 123M / 340M, VAE 84M, CLIP's real BPE tokenizer from
open_clip's vocabulary, the published scheduler, no image_encoder/), then runs each stage x
variant in its own subprocess (so the peak RSS is that run's) through THE training loop
(``train_stage`` in one process) with the defaults that fit the folder, gradient checkpointing
on, at a small resolution on synthetic frames, and exports the stage.

Printed per run: trainable parameters, peak RSS (build + step + export, the process's
``ru_maxrss``), seconds for the step, bytes exported, and the export over the folder's full UNet
(measured in the same run). The "issue" columns are the numbers of issue 15 before this work
(8.2 GiB peak at build, 12.3 GiB at export, 3.9 GB per stage export, 1.25 B trainable for
videoldm); target: a base step under 10 GiB peak on CPU.

    python benchmarks/sd_scale.py --sd 1.5 --stages base --variants make_a_video   # ~5 min, ~9 GiB on CPU
    python benchmarks/sd_scale.py                                                   # everything: SD 1.5 and 2.1
    python benchmarks/sd_scale.py --size 256 --frames 16                            # on a GPU (bf16 autocast)

The folders stay under --work (SD 1.5: 4.3 GB) and are reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 2**30
DIFFUSION = ("base", "interpolation", "superres")
STAGES = (*DIFFUSION, "vae_decoder")  # the prior needs an image encoder, which SD folders lack
VARIANTS = ("make_a_video", "videoldm", "lavie")
ISSUE = {"peak": 12.3 * GIB, "export": 3.9e9, "trainable": {"videoldm": 1.25e9}}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def build_folder(work: Path, version: str) -> Path:
    """The SD folder for ``version`` under ``work``, built once in a subprocess (its peak stays there)."""
    folder = work / f"sd{version}"
    if not (folder / "model_index.json").is_file():
        code = f"from pipelines.train.sd_folders import write_sd_folder; write_sd_folder({str(folder)!r}, {version!r})"
        subprocess.run([sys.executable, "-c", code], check=True)
    return folder


def run_one(folder: str, stage: str, variant: str, size: int, frames: int, work: str) -> dict:
    """One stage step through the training loop in this process; returns its figures."""
    import numpy as np
    import torch
    from safetensors import safe_open

    from pipelines.train.loop import TrainJob, local_context, train_stage
    from pipelines.train.preflight import check_pretrained, with_folder_defaults
    from pipelines.train.config import TrainConfig
    from storage.location import StorageLocation

    block = {"steps": 1, "width": size, "height": size, "num_frames": frames}
    if stage in DIFFUSION:
        block["variant"] = variant
    if stage == "interpolation":
        block.update(num_frames=frames + 1, factor=max(2, frames // 2))
    config = TrainConfig(name=f"{stage}-{variant}", pretrained=folder, num_workers=1, gradient_checkpointing=True,
                         data={"batch_size": 1}, **{stage: block})
    check_pretrained(config, stage)
    config = with_folder_defaults(config)
    job = TrainJob(stage, config, StorageLocation(work))
    stage_config = config.stage(stage)
    rng = np.random.default_rng(0)
    batch = {
        "index": np.array([0]), "key": np.array(["synthetic"], dtype=object),
        "pixels": rng.integers(0, 255, (1, stage_config.num_frames, size, size, 3), dtype=np.uint8),
        "fps": np.array([8.0], dtype=np.float32), "is_image": np.array([False]),
        "caption": np.array(["a red car drives down a street"], dtype=object), "dropped": np.array([False]),
    }
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    result = train_stage(job, local_context([batch], device=device))
    total = time.perf_counter() - started
    checkpoint = job.paths.path("checkpoints", "step_00000001")
    with safe_open(f"{checkpoint}/trainable.safetensors", "pt") as trainable:
        count = sum(math.prod(trainable.get_slice(name).get_shape()) for name in trainable.keys())
    samples_per_second = result.get("samples_per_second") or 0
    return {
        "trainable": count,
        "step_s": 1 / samples_per_second if samples_per_second else None,
        "total_s": total,
        "export_bytes": folder_bytes(Path(result["export"])),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_gpu": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        "loss": result.get("loss"),
    }


def child(args: argparse.Namespace) -> None:
    figures = run_one(args.folder, args.stage, args.variant, args.size, args.frames, args.root)
    print("RESULT " + json.dumps(figures))


def runs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    chosen = []
    for version in args.sd:
        for stage in args.stages:
            for variant in (args.variants if stage in DIFFUSION else ["-"]):
                chosen.append((version, stage, variant))
    return chosen


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sd", nargs="+", choices=("1.5", "2.1"), default=["1.5", "2.1"])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (latents are 1/8)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "t2v-sd-scale")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    args.work.mkdir(parents=True, exist_ok=True)
    header = (f"{'sd':>4} {'stage':<14}{'variant':<13}{'trainable':>11}{'issue':>8}{'peak GiB':>10}{'issue':>7}"
              f"{'step s':>8}{'run s':>7}{'export GB':>11}{'issue':>7}{'/ UNet':>8}")
    print(f"{args.size}x{args.size} px, {args.frames} frames, gradient checkpointing, one step per run")
    print(header)
    for version, stage, variant in runs(args):
        folder = build_folder(args.work, version)
        unet_bytes = folder_bytes(folder / "unet")
        root = tempfile.mkdtemp(dir=args.work, prefix="root-")
        command = [sys.executable, __file__, "--child", "--folder", str(folder), "--stage", stage, "--variant",
                   variant if variant != "-" else "make_a_video", "--root", root, "--size", str(args.size),
                   "--frames", str(args.frames)]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{version:>4} {stage:<14}{variant:<13} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        f = json.loads(line[len("RESULT "):])
        issue_trainable = ISSUE["trainable"].get(variant) if stage in DIFFUSION else None
        issue_trainable = f"{issue_trainable / 1e9:.2f}B" if issue_trainable else "-"
        issue_export = f"{ISSUE['export'] / 1e9:.1f}" if stage in DIFFUSION else "-"
        step = f"{f['step_s']:.1f}" if f["step_s"] else "-"
        gpu = f"  GPU {gib(f['peak_gpu'])} GiB" if f["peak_gpu"] else ""
        print(
            f"{version:>4} {stage:<14}{variant:<13}{f['trainable'] / 1e6:>10.1f}M{issue_trainable:>8}"
            f"{gib(f['peak_rss']):>10}{gib(ISSUE['peak']):>7}{step:>8}{f['total_s']:>7.0f}"
            f"{f['export_bytes'] / 1e9:>11.3f}{issue_export:>7}{f['export_bytes'] / unet_bytes:>8.3f}{gpu}",
            flush=True,
        )
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
