"""LaVie's temporal attention: equal to LaVie's own block on the same weights (fixture, see
fixtures/README.md), loaded through the documented name mapping, and identity at init."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock
from safetensors.torch import load_file

import modeling
from modeling.lavie_weights import LaVieCheckpointError, lavie_to_t2v
from modeling.temporal_layers import FeedForwardTemporalAdapter, FrameContext, FrameContextSlot, TemporalAttention

FIXTURE = Path(__file__).parent / "fixtures" / "lavie_block.safetensors"
BLOCK = "mid_block.attentions.0.transformer_blocks.0"


def t2v_block(fixture: dict[str, torch.Tensor]) -> tuple[BasicTransformerBlock, FeedForwardTemporalAdapter]:
    """diffusers' block (the spatial part) with t2v's LaVie layer attached, as inflation does."""
    block = BasicTransformerBlock(72, 2, 36, cross_attention_dim=16, activation_fn="geglu").eval()
    frames = FrameContextSlot()
    frames.current = FrameContext(num_frames=12)
    layer = TemporalAttention(72, 2, "rope", zero_init=True, rotary_dim=32, relative_bias=True)
    adapter = FeedForwardTemporalAdapter(layer, frames)
    adapter.attach(block)
    lavie_state = {f"{BLOCK}.{k.removeprefix('weight.')}": v.float() for k, v in fixture.items() if k.startswith("weight.")}
    mapped = lavie_to_t2v(lavie_state)
    temporal_prefix = f"temporal_layers.{BLOCK.replace('.', '-')}."
    block.load_state_dict({k.removeprefix(f"unet.{BLOCK}."): v for k, v in mapped.items() if k.startswith("unet.")})
    adapter.load_state_dict({k.removeprefix(temporal_prefix): v for k, v in mapped.items() if k.startswith(temporal_prefix)})
    return block, adapter


@torch.no_grad()
def test_lavie_block_equals_reference_on_the_same_weights():
    fixture = load_file(FIXTURE)
    block, adapter = t2v_block(fixture)
    hidden, context = fixture["hidden"].float(), fixture["context"].float()
    assert (block(hidden, encoder_hidden_states=context) - fixture["output"]).abs().max() < 1e-5
    adapter.layer.to_out.weight.zero_()  # LaVie's init: output weight zero, its bias kept
    assert (block(hidden, encoder_hidden_states=context) - fixture["output_out_weight_zero"]).abs().max() < 1e-5
    adapter.layer.to_out.bias.zero_()  # t2v's init: the block is the spatial block
    zero = block(hidden, encoder_hidden_states=context)
    assert (zero - fixture["output_out_zero"]).abs().max() < 1e-5
    spatial_only = BasicTransformerBlock(72, 2, 36, cross_attention_dim=16, activation_fn="geglu").eval()
    spatial_only.load_state_dict(block.state_dict())
    assert torch.equal(zero, spatial_only(hidden, encoder_hidden_states=context))


def test_lavie_inflation_places_one_layer_per_transformer_block(tiny_unet2d):
    video_unet = modeling.inflate(tiny_unet2d, "lavie", head_dim=8)
    blocks = [n for n, m in video_unet.unet.named_modules() if isinstance(m, BasicTransformerBlock)]
    assert sorted(video_unet.temporal_layers.keys()) == sorted(n.replace(".", "-") for n in blocks)
    for adapter in video_unet.temporal_layers.values():
        head_dim = adapter.layer.to_out.in_features // adapter.layer.num_heads  # 4 in the tiny UNet
        assert isinstance(adapter, FeedForwardTemporalAdapter) and adapter.layer.rotary_dim == min(32, head_dim)
        assert not adapter.layer.to_out.weight.any() and not adapter.layer.to_out.bias.any()
    # The mapping's output loads into the model strictly (names and shapes match).
    lavie_names = {}
    for name, tensor in video_unet.state_dict().items():
        if name.startswith("unet."):
            lavie_names[name.removeprefix("unet.")] = tensor
    for key, adapter in video_unet.temporal_layers.items():
        block, layer = key.replace("-", "."), adapter.layer
        q, k, v = layer.to_qkv.weight.chunk(3)
        lavie_names |= {f"{block}.norm_temp.weight": layer.norm.weight, f"{block}.norm_temp.bias": layer.norm.bias,
                        f"{block}.attn_temp.to_q.weight": q, f"{block}.attn_temp.to_k.weight": k,
                        f"{block}.attn_temp.to_v.weight": v, f"{block}.attn_temp.to_out.0.weight": layer.to_out.weight,
                        f"{block}.attn_temp.to_out.0.bias": layer.to_out.bias,
                        f"{block}.attn_temp.time_rel_pos_bias.relative_attention_bias.weight":
                            layer.relative_bias.relative_attention_bias.weight}
    mapped = lavie_to_t2v(lavie_names)
    expected = {k for k in video_unet.state_dict() if not k.startswith("fps_embedding.")}
    assert set(mapped) == expected
    video_unet.load_state_dict(mapped, strict=False)
    with pytest.raises(LaVieCheckpointError, match="missing"):
        lavie_to_t2v({f"{blocks[0]}.attn_temp.to_q.weight": torch.zeros(1)})
