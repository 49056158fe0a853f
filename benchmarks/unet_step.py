"""Training-step time and peak memory of the inflated video UNets vs diffusers' AnimateDiff.

Every variant (make_a_video, videoldm, lavie) and AnimateDiff (``UNetMotionModel.from_unet2d``)
inflate the same 2D UNet in the same run. A step = forward + backward + AdamW step on 16
frames with the spatial layers frozen (only temporal layers train, as AnimateDiff/VideoLDM
do). Each runs with and without gradient checkpointing. Temporal layers of make_a_video and
videoldm are sized (feed-forward width) to the AnimateDiff motion-module parameter count
(``--no-match``: the papers' layers); lavie keeps LaVie's layer as it is (it has no
feed-forward to widen).

Targets: time per FLOP (``s/FLOP x AD``) <= 1.00, i.e. each variant runs its work at least as
efficiently as AnimateDiff; checkpointing cuts peak memory to <= 0.60. Step time at matched
parameters is not a target: the papers place temporal layers where they cost more FLOPs per
parameter. On a GPU each row's bf16 TFLOP/s is printed beside the GPU's dense bf16 peak.

GFLOP: FLOPs of one step (FlopCounterMode, plus the CPU attention kernels it has no formula
for). At equal parameters the papers' layers sit at higher resolutions than AnimateDiff's
(none at the lowest-resolution blocks, and for make_a_video/videoldm one right after the
first conv, so backward runs through the full-resolution spatial transformer); "s/FLOP x AD"
is "step x AD" over "GFLOP x AD", the time per FLOP, i.e. how efficiently each model runs the
work it has to do.

Step time: wall seconds on GPU; on CPU the process's CPU seconds (a shared machine makes
wall time swing by 10x), settings interleaved round-robin, fastest kept.
Peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU a dispatch-mode tracker
that adds up the bytes of every storage created during the step and subtracts them when
freed (weights and optimizer state that exist before the step are not counted).

    OMP_NUM_THREADS=1 python benchmarks/unet_step.py            # CPU, float32, ~4 min on an idle core
    (one thread: spinning OpenMP threads on a busy machine inflate the CPU seconds)
    python benchmarks/unet_step.py --steps 10 --size large      # on a GPU: bf16, TFLOP/s
    python benchmarks/unet_step.py --size large --flops-only    # FLOPs at SD width, CPU, ~8 min
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

import modeling
from modeling.freeze import apply_freeze_policy

SIZES = {
    # small-but-not-tiny: SD layout, 3 levels, runs on 2 CPU cores in a few minutes
    "small": dict(block_out_channels=(32, 64, 128), layers_per_block=1, cross_attention_dim=128, latent=16),
    "large": dict(block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=768, latent=32),
}


class AllocationTracker(TorchDispatchMode):
    """Live bytes of storages created while active, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self._tracked:
            return
        size = storage.nbytes()
        self._tracked.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, key, size)

    def _release(self, key: int, size: int) -> None:
        self._tracked.discard(key)
        self.live -= size


# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, by device-name fragment.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.0}


def gpu_bf16_peak_tflops(device_name: str) -> float | None:
    """The first table entry whose fragment the CUDA device name contains (None: unknown)."""
    return next((peak for fragment, peak in BF16_PEAK_TFLOPS.items() if fragment in device_name), None)


@dataclass
class Row:
    name: str
    temporal_params: int
    step_s: float
    step_ckpt_s: float
    peak_mb: float
    peak_ckpt_mb: float
    gflop: float  # forward + backward FLOPs of one step (without checkpointing)
    tflops: float


def base_unet(size: str) -> UNet2DConditionModel:
    spec = SIZES[size]
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=spec["latent"],
        block_out_channels=spec["block_out_channels"],
        layers_per_block=spec["layers_per_block"],
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=spec["cross_attention_dim"],
        attention_head_dim=8,
    )


def animatediff(unet2d: UNet2DConditionModel) -> UNetMotionModel:
    adapter = MotionAdapter(
        block_out_channels=unet2d.config.block_out_channels,
        motion_layers_per_block=unet2d.config.layers_per_block,
        motion_num_attention_heads=8,
        motion_max_seq_length=32,
    )
    model = UNetMotionModel.from_unet2d(unet2d, adapter)
    model.freeze_unet2d_params()  # AnimateDiff trains the motion modules only
    return model


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sized_variant(unet2d: UNet2DConditionModel, variant: str, target: int | None) -> torch.nn.Module:
    """Inflate with the feed-forward width whose temporal parameter count is closest to
    ``target`` (None: no feed-forward, the papers' layers as they are).

    The count is linear in ``ff_mult`` from 1 on, so two probe inflations give the width.
    No fps embedding: neither side is given a frame rate, so its weights would be counted
    as temporal parameters that do no work.
    """

    def build(ff_mult: int) -> torch.nn.Module:
        model = modeling.inflate(unet2d, variant, head_dim=16, ff_mult=ff_mult, spatial_kernel=1, fps_embedding=False)
        apply_freeze_policy(model, "spatial_frozen")
        return model

    ff_mult = 0
    if target is not None:
        one, two = count_trainable(build(1)), count_trainable(build(2))
        if two > one:  # lavie's layer has no feed-forward: its size does not move
            ff_mult = max(1, round((target - one) / (two - one)) + 1)
    print(f"{variant}: ff_mult={ff_mult}", file=sys.stderr, flush=True)
    return build(ff_mult)


def make_step(model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    spec = SIZES[args.size]
    generator = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(args.batch, 4, args.frames, spec["latent"], spec["latent"], generator=generator).to(device)
    text = torch.randn(args.batch, 77, spec["cross_attention_dim"], generator=generator).to(device)
    timesteps = torch.randint(0, 1000, (args.batch,), generator=generator).to(device)
    if isinstance(model, UNetMotionModel):  # it expects text already repeated per frame, as its pipeline does
        text = text.repeat_interleave(args.frames, dim=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            prediction = model(latents, timesteps, text).sample
        torch.nn.functional.mse_loss(prediction.float(), latents).backward()
        optimizer.step()

    return step


def timed_step(step: Callable[[], None], device: torch.device) -> float:
    """Wall seconds on GPU; on CPU the seconds of CPU this process used (all its threads),
    which other processes on a shared machine disturb far less than wall time."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        return time.perf_counter() - start
    start = time.process_time()
    step()
    return time.process_time() - start


def peak_memory_mb(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with AllocationTracker() as tracker:
        step()
    return tracker.peak / 2**20


def set_checkpointing(model: torch.nn.Module, enabled: bool) -> None:
    if enabled:
        model.enable_gradient_checkpointing()
    else:
        model.disable_gradient_checkpointing()


def measure_all(models: dict[str, torch.nn.Module], args: argparse.Namespace, device: torch.device) -> list[Row]:
    """Round-robin over (model, checkpointing) so load changes on a shared machine hit all
    settings alike; each setting keeps its fastest step."""
    steps = {name: make_step(model.to(device).train(), args, device) for name, model in models.items()}
    settings = [(name, ckpt) for name in models for ckpt in (False, True)]
    durations: dict[tuple[str, bool], list[float]] = {setting: [] for setting in settings}
    peaks: dict[tuple[str, bool], float] = {}
    for name, ckpt in settings:
        set_checkpointing(models[name], ckpt)
        # Also the warm-up. AdamW creates its state at the end of the first step, after
        # activations are freed, so that does not move the peak.
        peaks[name, ckpt] = peak_memory_mb(steps[name], device)
    for round_index in range(args.steps):
        for name, ckpt in settings:
            set_checkpointing(models[name], ckpt)
            durations[name, ckpt].append(timed_step(steps[name], device))
        print(f"round {round_index + 1}/{args.steps} done", file=sys.stderr, flush=True)
    rows = []
    for name, model in models.items():
        step_s = min(durations[name, False])
        set_checkpointing(model, False)
        gflop = step_gflop(steps[name])
        tflops = gflop / step_s / 1e3 if device.type == "cuda" else float("nan")
        rows.append(
            Row(name, count_trainable(model), step_s, min(durations[name, True]), peaks[name, False], peaks[name, True],
                gflop, tflops)
        )
    return rows


def _cpu_flash_attention_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_attention_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's counter has formulas for the CUDA attention kernels only: on CPU every
# scaled_dot_product_attention (the spatial attention of all models, AnimateDiff's motion
# modules, make_a_video's and videoldm's temporal attention) would count zero, while
# attention written as bmm (lavie's biased one) counts. The same formulas as the CUDA kernels'.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_attention_backward_flop,
}


def step_gflop(step: Callable[[], None]) -> float:
    """FLOPs of one step, counted on CPU too: they say how much of a time ratio is work placed
    differently (e.g. temporal layers at higher resolution) rather than overhead."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as flops:
        step()
    return flops.get_total_flops() / 1e9


def print_flops(builders: dict[str, Callable[[], torch.nn.Module]], args: argparse.Namespace, device: torch.device) -> None:
    """GFLOP per step only: what ``--size large`` costs at matched parameters, without timing it on a CPU.

    One model at a time: four SD-width UNets with their activations do not fit in 24 GiB together.
    """
    print(f"size={args.size} frames={args.frames} batch={args.batch}, spatial layers frozen")
    print(f"{'model':<13}{'temporal params':>16}{'x AD':>6}{'GFLOP':>10}{'x AD':>6}")
    reference: tuple[int, float] | None = None
    for name, build in builders.items():
        model = build()
        params, gflop = count_trainable(model), step_gflop(make_step(model.to(device).train(), args, device))
        del model
        gc.collect()
        reference = reference or (params, gflop)
        print(f"{name:<13}{params:>16,}{params / reference[0]:>6.2f}{gflop:>10.1f}{gflop / reference[1]:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed rounds (fastest step kept)")
    parser.add_argument("--no-match", action="store_true", help="paper-sized temporal layers (no feed-forward)")
    parser.add_argument("--flops-only", action="store_true", help="count each step's FLOPs, time nothing")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    unet2d = base_unet(args.size)
    target = None if args.no_match else count_trainable(animatediff(unet2d))
    builders: dict[str, Callable[[], torch.nn.Module]] = {"animatediff": functools.partial(animatediff, unet2d)}
    for variant in ("make_a_video", "videoldm", "lavie"):
        builders[variant] = functools.partial(sized_variant, unet2d, variant, target)
    if args.flops_only:
        print_flops(builders, args, device)
        return
    rows = measure_all({name: build() for name, build in builders.items()}, args, device)

    reference = rows[0]
    dtype = "bf16 autocast" if device.type == "cuda" else "float32"
    clock = "wall" if device.type == "cuda" else "process CPU"
    print(f"device={device} ({torch.get_num_threads()} threads, {clock} seconds) dtype={dtype} size={args.size} "
          f"frames={args.frames} batch={args.batch} rounds={args.steps} (fastest), spatial layers frozen")
    header = (f"{'model':<13}{'temporal params':>16}{'x AD':>6}{'step s':>9}{'x AD':>6}{'ckpt s':>9}"
              f"{'peak MB':>9}{'ckpt MB':>9}{'ckpt/no':>8}{'GFLOP':>8}{'x AD':>6}{'s/FLOP x AD':>12}{'TFLOP/s':>9}")
    print(header)
    for row in rows:
        print(f"{row.name:<13}{row.temporal_params:>16,}{row.temporal_params / reference.temporal_params:>6.2f}"
              f"{row.step_s:>9.3f}{row.step_s / reference.step_s:>6.2f}{row.step_ckpt_s:>9.3f}"
              f"{row.peak_mb:>9.1f}{row.peak_ckpt_mb:>9.1f}{row.peak_ckpt_mb / row.peak_mb:>8.2f}"
              f"{row.gflop:>8.2f}{row.gflop / reference.gflop:>6.2f}"
              f"{(row.step_s / row.gflop) / (reference.step_s / reference.gflop):>12.2f}{row.tflops:>9.3g}")
    if device.type == "cuda":
        name, peak = torch.cuda.get_device_name(), gpu_bf16_peak_tflops(torch.cuda.get_device_name())
        shown = "unknown (not in BF16_PEAK_TFLOPS)" if peak is None else f"{peak:g} TFLOP/s"
        print(f"GPU {name}: dense bf16 peak {shown}")
        for row in rows:
            share = "" if peak is None else f" = {row.tflops / peak:.1%} of peak"
            print(f"  {row.name:<13} {row.tflops:.3g} TFLOP/s achieved (bf16 autocast){share}")
    print("targets: s/FLOP x AD <= 1.00 for every variant; ckpt/no peak memory <= 0.60")


if __name__ == "__main__":
    main()
