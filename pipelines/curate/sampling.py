"""Per-row seeded sampling for batched generation (kept apart so captions import torch only when a model runs)."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LogitsProcessor


class RowSeededSampling(LogitsProcessor):
    """Logits processor for sampling by Gumbel-max with one generator per row.

    Greedy decoding of ``logits / T + Gumbel noise`` samples from ``softmax(logits / T)``; drawing
    each row's noise from its own seeded generator makes a row's text independent of its batch.
    """

    def __init__(self, seeds: Sequence[int], temperature: float):
        self.generators = [torch.Generator().manual_seed(seed % (2**63)) for seed in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators]).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-7)))
        return scores.float() / self.temperature + gumbel
