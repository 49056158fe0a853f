"""Names of LaVie's base UNet checkpoint (Vchitect/LaVie, ``base/models``) in a t2v VideoUNet.

LaVie's UNet keeps diffusers' module layout for everything spatial, so those keys only
gain t2v's ``unet.`` prefix. Its temporal attention lives in every transformer block as
``<block>.norm_temp`` and ``<block>.attn_temp``; in t2v that block's layer is
``temporal_layers.<block with '.' -> '-'>.layer``:

=====================================================  ===========================================
LaVie (per ``...transformer_blocks.k``)                t2v (per ``temporal_layers.<block>.layer``)
=====================================================  ===========================================
``norm_temp.weight`` / ``.bias``                       ``norm.weight`` / ``.bias``
``attn_temp.to_q.weight``, ``to_k``, ``to_v``          ``to_qkv.weight`` (q, k, v stacked on rows)
``attn_temp.to_out.0.weight`` / ``.bias``              ``to_out.weight`` / ``.bias``
``attn_temp.time_rel_pos_bias.relative_attention_bias  ``relative_bias.relative_attention_bias
.weight``                                              .weight``
=====================================================  ===========================================

The rotary embedding has no weights (LaVie's ``RotaryEmbedding(32)`` frequencies are fixed).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from storage.errors import T2VError

_SIMPLE = {
    "norm_temp.weight": "norm.weight",
    "norm_temp.bias": "norm.bias",
    "attn_temp.to_out.0.weight": "to_out.weight",
    "attn_temp.to_out.0.bias": "to_out.bias",
    "attn_temp.time_rel_pos_bias.relative_attention_bias.weight": "relative_bias.relative_attention_bias.weight",
}
_QKV = ("attn_temp.to_q.weight", "attn_temp.to_k.weight", "attn_temp.to_v.weight")


class LaVieCheckpointError(T2VError):
    """A LaVie state dict that does not have the layout this mapping expects."""


def lavie_to_t2v(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LaVie base UNet state dict -> the state dict of a t2v ``lavie`` VideoUNet."""
    out: dict[str, torch.Tensor] = {}
    blocks: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        block, sep, rest = key.partition(".attn_temp.") if ".attn_temp." in key else key.partition(".norm_temp.")
        if not sep:
            out[f"unet.{key}"] = tensor
            continue
        blocks.setdefault(block, {})[sep.strip(".") + "." + rest] = tensor
    for block, tensors in blocks.items():
        prefix = f"temporal_layers.{block.replace('.', '-')}.layer."
        missing = sorted((set(_SIMPLE) | set(_QKV)) - tensors.keys())
        unknown = sorted(tensors.keys() - set(_SIMPLE) - set(_QKV))
        if missing or unknown:
            raise LaVieCheckpointError(f"LaVie block {block}: missing {missing}, unknown {unknown}")
        for theirs, ours in _SIMPLE.items():
            out[prefix + ours] = tensors[theirs]
        out[prefix + "to_qkv.weight"] = torch.cat([tensors[name] for name in _QKV])
    return out
