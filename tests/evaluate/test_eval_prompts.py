"""Prompt sets: UCF-101 templates built in, caption files in the usual layouts, clear errors."""

import json

import pytest

from pipelines.evaluate.prompts import PromptFileError, prompt_set, read_prompt_file


def test_ucf101_has_one_template_per_class_in_dataset_order():
    prompts = prompt_set("ucf101")
    assert len(prompts) == 101
    assert (prompts[0].label, prompts[0].text) == ("ApplyEyeMakeup", "a person applying eye makeup.")
    assert prompt_set("ucf101", limit=3) == prompts[:3]


def test_shapes_set_names_every_colour_and_direction_four_times():
    texts = [prompt.text for prompt in prompt_set("shapes")]
    assert len(texts) == 16 and texts[0] == "a red circle moving left"
    for word in ("red", "green", "blue", "yellow", "left", "right", "up", "down"):
        assert sum(f" {word} " in f" {text} " for text in texts) == 4, word
    assert {text.split()[2] for text in texts} == {"circle", "square", "triangle"}


def test_caption_files_in_msrvtt_json_csv_jsonl_and_txt(tmp_path):
    msrvtt = {"videos": [], "sentences": [{"caption": "a man is cooking", "video_id": "video7010"},
                                          {"caption": "a dog runs", "video_id": "video7011"}]}
    (tmp_path / "msrvtt.json").write_text(json.dumps(msrvtt))
    (tmp_path / "caps.csv").write_text("video_id,caption\nv1,a cat sleeps\nv2,\n")
    (tmp_path / "caps.jsonl").write_text('{"text": "waves crash"}\n\n{"prompt": "a car drives"}\n')
    (tmp_path / "mine.txt").write_text("# my prompts\na red balloon\n\n  a blue sky  \n")

    msr = prompt_set("msrvtt", tmp_path / "msrvtt.json")
    assert [(p.text, p.label) for p in msr] == [("a man is cooking", "video7010"), ("a dog runs", "video7011")]
    assert [(p.text, p.label) for p in read_prompt_file(tmp_path / "caps.csv")] == [("a cat sleeps", "v1")]
    assert [p.text for p in read_prompt_file(tmp_path / "caps.jsonl")] == ["waves crash", "a car drives"]
    assert [p.text for p in prompt_set("prompts", tmp_path / "mine.txt")] == ["a red balloon", "a blue sky"]
    (tmp_path / "list.json").write_text(json.dumps(["one", "two"]))
    assert [p.text for p in read_prompt_file(tmp_path / "list.json")] == ["one", "two"]


def test_missing_empty_and_unknown_files_fail_clearly(tmp_path):
    with pytest.raises(PromptFileError, match="needs a prompt or caption file"):
        prompt_set("msrvtt")
    with pytest.raises(PromptFileError, match="does not exist"):
        read_prompt_file(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(PromptFileError, match="no prompts"):
        read_prompt_file(tmp_path / "empty.txt")
    (tmp_path / "bad.jsonl").write_text('{"title": "x"}\n')
    with pytest.raises(PromptFileError, match="none of the text fields"):
        read_prompt_file(tmp_path / "bad.jsonl")
    (tmp_path / "p.yaml").write_text("a: b")
    with pytest.raises(PromptFileError, match="unsupported"):
        read_prompt_file(tmp_path / "p.yaml")
