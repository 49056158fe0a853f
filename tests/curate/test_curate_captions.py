import numpy as np

from pipelines.curate.captions import LABEL_TEMPLATE, LLM, MANIFEST, VLM, LabelCaptioner, LLMParaphraser, VLMCaptioner, humanize_label, label_caption
from pipelines.curate.config import CaptionConfig
from pipelines.curate.stage import set_up
from pipelines.ucf101 import UCF101_CLASSES, ucf101_prompt, ucf101_prompts


def _col(*values):
    column = np.empty(len(values), dtype=object)
    column[:] = list(values)
    return column


def test_ucf101_has_101_classes_and_one_sentence_each():
    assert len(UCF101_CLASSES) == len(set(UCF101_CLASSES)) == 101
    assert UCF101_CLASSES[0] == "ApplyEyeMakeup" and UCF101_CLASSES[-1] == "YoYo"
    prompts = ucf101_prompts()
    assert len(set(prompts)) == 101 and all(p.endswith(".") for p in prompts)
    assert ucf101_prompt("PlayingGuitar") == "a person playing the guitar."
    assert sum(p.startswith("a person ") for p in prompts) == 100


def test_label_captions():
    config = CaptionConfig(templates={"Custom": "someone does a custom thing."})
    assert humanize_label("BlowDryHair") == "blow dry hair" == humanize_label("blow_dry-hair")
    assert label_caption("PlayingGuitar", config) == "a person playing the guitar."
    assert label_caption("riding_a_unicycle", config) == "a video of riding a unicycle."
    assert label_caption("Custom", config) == "someone does a custom thing."


def test_label_captioner_keeps_manifest_and_marks_sources():
    out = LabelCaptioner().process({"caption": _col("a dog runs", None, None), "label": _col("Biking", "Biking", None)})
    assert list(out["caption"]) == ["a dog runs", "a person riding a bike.", None]
    assert list(out["caption_source"]) == [MANIFEST, LABEL_TEMPLATE, None]


def _label_batch(ids):
    return LabelCaptioner().process({"id": _col(*ids), "caption": _col(*[None] * len(ids)), "label": _col(*["PlayingGuitar"] * len(ids))})


def test_llm_paraphrases_deterministically_per_row(tiny_llm_dir):
    [stage] = set_up([LLMParaphraser({"llm_path": str(tiny_llm_dir), "llm_max_new_tokens": 6, "batch_size": 3})])
    assert stage.skipped_reason is None
    out = stage.process(_label_batch(["a", "b", "c", "d"]))
    assert set(out["caption_source"]) == {LLM}
    assert all(isinstance(c, str) and c for c in out["caption"])
    assert set(out["label_caption"]) == {"a person playing the guitar."}
    # same row ids -> same captions, whatever the batch composition; other seeds differ
    [again] = set_up([LLMParaphraser({"llm_path": str(tiny_llm_dir), "llm_max_new_tokens": 6, "batch_size": 1})])
    again = again.process(_label_batch(["c", "a"]))
    assert list(again["caption"]) == [out["caption"][2], out["caption"][0]]
    assert len(set(out["caption"])) > 1


def test_llm_greedy_mode_and_skipping(tiny_llm_dir):
    [greedy] = set_up([LLMParaphraser({"llm_path": str(tiny_llm_dir), "llm_do_sample": False, "llm_max_new_tokens": 6})])
    out = greedy.process(_label_batch(["a", "b"]))
    assert out["caption"][0] == out["caption"][1]  # same prompt, no sampling
    [skipped] = set_up([LLMParaphraser()])
    assert "no model configured" in skipped.skipped_reason
    assert list(skipped.process(_label_batch(["a"]))["caption_source"]) == [LABEL_TEMPLATE]


def test_vlm_captions_only_rows_without_a_caption(tiny_vlm_dir):
    [stage] = set_up([VLMCaptioner({"vlm_path": str(tiny_vlm_dir), "vlm_max_new_tokens": 5, "num_keyframes": 3})])
    frames = np.random.default_rng(0).integers(0, 256, (2, 6, 40, 48, 3), dtype=np.uint8)
    out = stage.process({"caption": _col(None, "kept"), "caption_source": _col(None, MANIFEST), "keyframes": frames})
    assert isinstance(out["caption"][0], str) and out["caption"][0]
    assert list(out["caption_source"]) == [VLM, MANIFEST] and out["caption"][1] == "kept"
    assert stage.process(out | {"caption": _col(None, "kept")})["caption"][0] == out["caption"][0]  # greedy: repeatable
    assert "no model configured" in VLMCaptioner().skipped_reason
