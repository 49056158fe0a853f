"""Explicit pyarrow schemas of the catalog tables. Every table has a string ``id``."""

from __future__ import annotations

import pyarrow as pa

SAMPLES = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "video" | "image"
        pa.field("sha256", pa.string(), nullable=False),  # content hash of the media bytes
        pa.field("blob", pa.string(), nullable=False),  # key in the blob store, relative to the root
        pa.field("source", pa.string(), nullable=False),  # the folder / manifest / dataset it came from
        pa.field("source_uri", pa.string(), nullable=False),  # the file as found
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("label", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("num_frames", pa.int64()),
        pa.field("duration", pa.float64()),
        pa.field("codec", pa.string()),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # which job rejected it: "ingest", "curate.split", ...
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),  # short machine-readable kind, e.g. "CorruptMediaError"
        pa.field("reason", pa.string(), nullable=False),  # what a person reads
        pa.field("sample_id", pa.string()),  # the sample it belonged to, when known
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"samples": SAMPLES, "quarantine": QUARANTINE}


def register_schema(name: str, schema: pa.Schema) -> None:
    """Later stages add their tables here (clips, funnel, runs, eval_results, ...)."""
    if "id" not in schema.names:
        raise ValueError(f"table {name!r} needs an 'id' column to upsert on")
    existing = SCHEMAS.get(name)
    if existing is not None and not existing.equals(schema):
        raise ValueError(f"table {name!r} is already registered with another schema")
    SCHEMAS[name] = schema


def schema_for(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(SCHEMAS))}") from None


CLIPS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),  # the samples row it was cut from
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("blob", pa.string(), nullable=False),  # H.264 mp4 in the blob store
        pa.field("pseudo", pa.bool_(), nullable=False),  # made from a still image by zoom and pan (VidRD)
        pa.field("start_frame", pa.int64(), nullable=False),  # in the source video; end is exclusive
        pa.field("end_frame", pa.int64(), nullable=False),
        pa.field("start_time", pa.float64(), nullable=False),
        pa.field("end_time", pa.float64(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),  # of the stored clip
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("duration", pa.float64(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("caption_source", pa.string()),  # manifest | label_template | llm | vlm
        pa.field("label", pa.string()),
        # scores: null when the stage was skipped (no weights configured)
        pa.field("motion_score", pa.float64()),
        pa.field("nsfw_score", pa.float64()),
        pa.field("nsfw_clip_score", pa.float64()),
        pa.field("toxicity_score", pa.float64()),
        pa.field("watermark_score", pa.float64()),
        pa.field("aesthetic_score", pa.float64()),
        pa.field("phash", pa.list_(pa.uint64())),  # perceptual hash of each keyframe (dedup)
    ]
)

FUNNEL = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # "<order>-<stage>"
        pa.field("order", pa.int32(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("rows_in", pa.int64(), nullable=False),
        pa.field("rows_out", pa.int64(), nullable=False),
        pa.field("dropped", pa.string(), nullable=False),  # JSON {reason: count}
        pa.field("skipped_reason", pa.string()),  # why a stage did not run (no weights configured, ...)
    ]
)

SCHEMAS.update({"clips": CLIPS, "funnel": FUNNEL})

RUNS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # "<run name>/<stage>"
        pa.field("name", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # base | interpolation | superres | vae_decoder | prior
        pa.field("status", pa.string(), nullable=False),  # running | finished | failed
        pa.field("step", pa.int64(), nullable=False),
        pa.field("total_steps", pa.int64(), nullable=False),
        pa.field("samples_seen", pa.int64(), nullable=False),
        pa.field("resumed_from", pa.int64()),  # the step this attempt started from (0: fresh)
        pa.field("loss", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("samples_per_second", pa.float64()),
        pa.field("data_wait_fraction", pa.float64()),  # of step time, mean since the last report
        pa.field("peak_gpu_memory_mib", pa.float64()),  # rank 0; null on CPU
        pa.field("num_workers", pa.int32(), nullable=False),
        pa.field("clips_version", pa.int64()),
        pa.field("checkpoint", pa.string()),  # storage path of the latest checkpoint
        pa.field("export", pa.string()),  # save_pretrained folder of the finished stage
        pa.field("tensorboard", pa.string()),
        pa.field("config", pa.string(), nullable=False),  # JSON of the train settings
        pa.field("error", pa.string()),
        pa.field("updated_at", pa.float64(), nullable=False),
    ]
)

SCHEMAS["runs"] = RUNS

EVAL_RESULTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # stable id of (run, checkpoint, prompt set, metric protocol, metric)
        pa.field("run", pa.string(), nullable=False),  # training run name
        pa.field("checkpoint", pa.string(), nullable=False),  # cascade folder evaluated, or its base checkpoint's
        pa.field("step", pa.int64()),  # training step of that checkpoint, when known (x axis of report plots)
        pa.field("prompt_set", pa.string(), nullable=False),  # ucf101 | msrvtt | prompts | shapes
        pa.field("protocol", pa.string(), nullable=False),  # metric protocol name, e.g. fvd2048_16f
        # fvd | is | clipsim | fid | the shapes judge's colour_accuracy, shape_accuracy, direction_accuracy, consistency
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("std", pa.float64()),  # IS: std over splits; CLIPSIM: std over videos
        pa.field("num_samples", pa.int64(), nullable=False),  # generated videos measured
        pa.field("num_real", pa.int64()),  # real videos for FVD/FID
        pa.field("clips_version", pa.int64()),  # clips table version the real videos came from
        pa.field("random_init", pa.bool_(), nullable=False),  # feature network had no weights: not comparable to papers
        pa.field("prompts", pa.list_(pa.string()), nullable=False),  # per generated clip, in order
        pa.field("seeds", pa.list_(pa.int64()), nullable=False),
        pa.field("clip_blobs", pa.list_(pa.string()), nullable=False),  # mp4 keys in the blob store
        pa.field("fps", pa.float64(), nullable=False),  # of the generated clips
        pa.field("config", pa.string(), nullable=False),  # JSON of the evaluation settings
        pa.field("eval_run_id", pa.string(), nullable=False),
        pa.field("created_at", pa.float64(), nullable=False),
    ]
)

SCHEMAS["eval_results"] = EVAL_RESULTS

GENERATIONS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # stable id of (run, checkpoint, prompt, seed, sampling settings)
        pa.field("run", pa.string(), nullable=False),  # training run name
        pa.field("checkpoint", pa.string(), nullable=False),  # cascade folder that generated it
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("long_video", pa.bool_(), nullable=False),  # sampled with VidRD's long-video method
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("blob", pa.string(), nullable=False),  # mp4 key in the blob store
        pa.field("config", pa.string(), nullable=False),  # JSON of the generation settings
        pa.field("generate_run_id", pa.string(), nullable=False),
        pa.field("created_at", pa.float64(), nullable=False),
    ]
)

SCHEMAS["generations"] = GENERATIONS

RATINGS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # stable id of (rater, pair): one answer per rater and pair
        pa.field("pair_id", pa.string(), nullable=False),  # stable id of the two generations compared
        pa.field("rater", pa.string(), nullable=False),
        pa.field("run_a", pa.string(), nullable=False),  # the runs as `t2v rate --runs A B` named them
        pa.field("run_b", pa.string(), nullable=False),
        pa.field("generation_a", pa.string(), nullable=False),  # generations ids
        pa.field("generation_b", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("left_run", pa.string(), nullable=False),  # the run shown on the left (drawn at random)
        pa.field("quality", pa.string(), nullable=False),  # which looks better, as given: left | right | same
        pa.field("text", pa.string(), nullable=False),  # which follows the text better: left | right | same
        pa.field("shown_at", pa.float64(), nullable=False),
        pa.field("answered_at", pa.float64(), nullable=False),
    ]
)

SCHEMAS["ratings"] = RATINGS
