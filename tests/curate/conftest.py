"""Shared fixtures: real media files, videos with known cuts, tiny models saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curate_media import FPS, shot_frames
from storage.media import read_image, write_mp4


@pytest.fixture(scope="session")
def photo(skimage_dir) -> np.ndarray:
    return read_image(skimage_dir / "astronaut.png")


@pytest.fixture(scope="session")
def cut_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "cuts.mp4"
    write_mp4(path, shot_frames(), FPS)
    return path


@pytest.fixture(scope="session")
def nsfw_filter():
    from pipelines.curate.filters import NSFWFilter

    stage = NSFWFilter({"num_keyframes": 2})
    stage.setup()
    return stage


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """An open_clip model folder (``local-dir:``) with a 768-d embedding, like ViT-L/14's."""
    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    model_cfg = {
        "embed_dim": 768,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    torch.manual_seed(0)
    state = CLIP(**model_cfg).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    return folder


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """A 1-layer GPT-2 and a word-level tokenizer built offline, saved like a hub checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_llm")
    words = sorted(set("a person playing the guitar applying eye makeup video of describe short this action in one sentence . :".split()))
    vocab = {token: i for i, token in enumerate(["<unk>", "<pad>", "<eos>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>").save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_embd=16, n_layer=1, n_head=2, n_positions=64, bos_token_id=2, eos_token_id=2, pad_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A 1-layer BLIP captioner with its processor; special tokens are banned in the LM head so the
    random model writes words instead of stopping at once."""
    import torch
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = tmp_path_factory.mktemp("tiny_vlm")
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] a photo of cat dog person red blue".split()
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         max_position_embeddings=32, encoder_hidden_size=16, bos_token_id=2, sep_token_id=3, pad_token_id=0),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16),
        projection_dim=16,
    )
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[:5] = -1e4
    model.save_pretrained(folder)
    return folder
