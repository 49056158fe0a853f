"""Captions and their provenance (``caption_source``).

Order of precedence, one stage each (:mod:`pipelines.curate.stage`, run in the annotate actors):
1. ``manifest``: the caption that came with the sample is kept.
2. ``label_template``: an action label becomes one sentence per class (UCF-101 sentences built in).
3. ``llm``: a causal LM paraphrases template captions, as VidRD does for action-recognition sets.
4. ``vlm``: an image-to-text model captions k keyframes of clips that still have no caption.

Generation is per-row deterministic: greedy decoding, and sampling draws its noise from a
generator seeded by the row id, so a resumed run writes the same captions as an uninterrupted one
whatever the batch composition.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from pipelines.curate.config import CaptionConfig
from pipelines.curate.frames import batch_length, iter_frame_stacks, keyframe_indices, object_column, stable_seed
from pipelines.curate.stage import Stage
from pipelines.ucf101 import UCF101_CLASSES, ucf101_prompt

MANIFEST, LABEL_TEMPLATE, LLM, VLM = "manifest", "label_template", "llm", "vlm"
CAPTION_SOURCES = (MANIFEST, LABEL_TEMPLATE, LLM, VLM)
_UCF101 = frozenset(UCF101_CLASSES)


def humanize_label(label: str) -> str:
    """``"ApplyEyeMakeup"`` / ``"apply_eye-makeup"`` -> ``"apply eye makeup"``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|[_\-]+", " ", label.strip())
    return re.sub(r"\s+", " ", spaced).lower()


def label_caption(label: str, config: CaptionConfig) -> str:
    if label in config.templates:
        return config.templates[label]
    if label in _UCF101:
        return ucf101_prompt(label)
    return config.template.format(label=humanize_label(label))


def _has_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _row_ids(batch: dict[str, np.ndarray]) -> list[str]:
    ids = batch.get("id")
    return [str(i) for i in ids] if ids is not None else [str(i) for i in range(batch_length(batch))]


class CaptionStage(Stage):
    """Base of the captioners: they share ``curate.caption`` and the caption columns, and drop nothing."""

    block = "caption"
    config_class = CaptionConfig
    runs_in = "annotate"
    columns = (("caption", pa.string()), ("caption_source", pa.string()))
    drops = False


class LabelCaptioner(CaptionStage):
    """Keeps manifest captions; captions labelled rows without one from the label."""

    name = "caption_label"

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = batch_length(batch)
        captions = list(batch.get("caption", [None] * n))
        labels = list(batch.get("label", [None] * n))
        sources = list(batch.get("caption_source", [None] * n))
        for i in range(n):
            if _has_text(captions[i]):
                sources[i] = sources[i] if _has_text(sources[i]) else MANIFEST
            elif _has_text(labels[i]):
                captions[i], sources[i] = label_caption(labels[i], self.config), LABEL_TEMPLATE
            else:
                captions[i], sources[i] = None, None
        return {**batch, "caption": object_column(captions), "caption_source": object_column(sources)}


class LLMParaphraser(CaptionStage):
    """Rewrites ``label_template`` captions with a transformers causal LM (``caption_source = "llm"``).

    The template caption stays in ``label_caption``. Empty generations keep the template caption.
    """

    name = "caption_llm"
    model = None  # until setup()

    @classmethod
    def skip_reason(cls, config: CaptionConfig) -> str | None:
        return None if config.llm_path else "LLM paraphrasing skipped: no model configured (caption.llm_path)"

    def setup(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from modeling.scorers import default_device

        path = self.config.llm_path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # decoder-only models continue the last token, so pad on the left
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = default_device()
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()

    def paraphrase(self, captions: Sequence[str], row_ids: Sequence[str]) -> list[str]:
        """One paraphrase per caption; the same (caption, row id, seed) always gives the same text."""
        import torch
        from transformers import LogitsProcessorList

        from pipelines.curate.sampling import RowSeededSampling

        out: list[str] = []
        for start in range(0, len(captions), self.config.batch_size):
            chunk = list(captions[start : start + self.config.batch_size])
            prompts = [self.config.llm_prompt.format(caption=c) for c in chunk]
            inputs = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
            processors = LogitsProcessorList()
            if self.config.llm_do_sample:
                seeds = [stable_seed(self.config.seed, row_id) for row_id in row_ids[start : start + len(chunk)]]
                processors.append(RowSeededSampling(seeds, self.config.llm_temperature))
            with torch.inference_mode():
                generated = self.model.generate(
                    **inputs,
                    max_new_tokens=self.config.llm_max_new_tokens,
                    do_sample=False,
                    logits_processor=processors,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            out += [_first_line(text) for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        return out

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = batch_length(batch)
        captions = list(batch.get("caption", [None] * n))
        sources = list(batch.get("caption_source", [None] * n))
        label_captions = list(batch.get("label_caption", [None] * n))
        todo = [i for i in range(n) if sources[i] == LABEL_TEMPLATE and _has_text(captions[i])]
        if self.model is not None and todo:
            ids = _row_ids(batch)
            texts = self.paraphrase([captions[i] for i in todo], [ids[i] for i in todo])
            for i, text in zip(todo, texts):
                if text:
                    label_captions[i], captions[i], sources[i] = captions[i], text, LLM
        return {
            **batch,
            "caption": object_column(captions),
            "caption_source": object_column(sources),
            "label_caption": object_column(label_captions),
        }


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


class VLMCaptioner(CaptionStage):
    """Captions rows that have no caption from k keyframes (``caption_source = "vlm"``).

    Each keyframe is captioned; the most frequent caption wins, ties going to the frame nearest the
    middle of the clip. Loads any transformers image-to-text / image-text-to-text model by path.
    """

    name = "caption_vlm"
    reads_keyframes = True
    model = None  # until setup()

    @classmethod
    def skip_reason(cls, config: CaptionConfig) -> str | None:
        return None if config.vlm_path else "VLM captioning skipped: no model configured (caption.vlm_path)"

    def setup(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from modeling.scorers import default_device

        path = self.config.vlm_path
        self.processor = AutoProcessor.from_pretrained(path)
        self.device = default_device()
        self.model = AutoModelForImageTextToText.from_pretrained(path).to(self.device).eval()

    def caption_images(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per uint8 RGB image, greedy."""
        import torch

        out: list[str] = []
        for start in range(0, len(images), self.config.batch_size):
            chunk = list(images[start : start + self.config.batch_size])
            kwargs: dict[str, Any] = {"images": chunk, "return_tensors": "pt"}
            if self.config.vlm_prompt is not None:
                kwargs["text"] = [self.config.vlm_prompt] * len(chunk)
            inputs = self.processor(**kwargs).to(self.device)
            with torch.inference_mode():
                generated = self.model.generate(**inputs, max_new_tokens=self.config.vlm_max_new_tokens, do_sample=False)
            if "input_ids" in inputs and self.model.config.is_encoder_decoder is False:
                # decoder-only VLMs echo the prompt: keep what they added
                generated = generated[:, inputs["input_ids"].shape[1] :]
            out += [text.strip() for text in self.processor.batch_decode(generated, skip_special_tokens=True)]
        return out

    def caption_clip(self, frames: np.ndarray) -> str:
        keyframes = frames[keyframe_indices(len(frames), self.config.num_keyframes)]
        return _consensus(self.caption_images(list(keyframes)))

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = batch_length(batch)
        captions = list(batch.get("caption", [None] * n))
        sources = list(batch.get("caption_source", [None] * n))
        if self.model is not None:
            for i, frames in enumerate(iter_frame_stacks(batch)):
                if not _has_text(captions[i]):
                    text = self.caption_clip(frames)
                    if text:
                        captions[i], sources[i] = text, VLM
        return {**batch, "caption": object_column(captions), "caption_source": object_column(sources)}


def _consensus(captions: list[str]) -> str:
    captions = [c for c in captions if c]
    if not captions:
        return ""
    counts = Counter(captions)
    middle = (len(captions) - 1) / 2
    order = {c: min(abs(i - middle) for i, x in enumerate(captions) if x == c) for c in counts}
    return min(counts, key=lambda c: (-counts[c], order[c]))
