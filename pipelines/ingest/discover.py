"""Reader: turn ``t2v ingest SOURCE...`` arguments into candidate rows.

A SOURCE is a folder of media, a manifest (CSV / parquet / JSON lines with
``path, caption, label``), or a HF ``datasets`` dataset saved with
``save_to_disk``. Candidates that can be rejected without reading the media
(outside the source roots, missing, not media) carry a ``reject`` reason so
they end in quarantine instead of stopping the run.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from storage.errors import T2VError
from storage.media import media_kind

MANIFEST_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json", ".ndjson": "json"}
# contentUrl and name: WebVid's CSV (videoid, name, page_dir, contentUrl)
PATH_COLUMNS = ("path", "file", "filepath", "video", "image", "video_path", "image_path", "uri", "contenturl")
CAPTION_COLUMNS = ("caption", "text", "prompt", "description", "name")
SHARD_SUFFIX = ".tar"  # webdataset shards as video2dataset and img2dataset write them


class SourceError(T2VError, ValueError):
    """A SOURCE argument cannot be used at all (the whole run stops with this message)."""


@dataclass
class Candidate:
    source: str
    source_uri: str
    path: str | None = None  # local file to read
    data: bytes | None = None  # media embedded in a dataset
    kind: str | None = None  # "video" | "image" when known
    caption: str | None = None
    label: str | None = None
    reject: str | None = None  # reason to quarantine without reading

    def as_row(self) -> dict:
        return asdict(self)


def resolve_roots(sources: list[str], configured: list[str]) -> list[Path]:
    """Folders ingest may read. Configured roots win; otherwise each SOURCE's own folder."""
    if configured:
        roots = [Path(r).expanduser().resolve() for r in configured]
        for source in sources:
            real = Path(source).expanduser().resolve()
            if not any(_inside(real, r) for r in roots):
                raise SourceError(f"{source} is outside the configured source roots ({', '.join(map(str, roots))})")
        return roots
    roots = []
    for source in sources:
        real = Path(source).expanduser().resolve()
        roots.append(real if real.is_dir() else real.parent)
    return roots


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def discover(sources: list[str], roots: list[Path]) -> Iterator[Candidate]:
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise SourceError(f"{source} does not exist")
        if path.is_dir() and _is_hf_dataset(path):
            yield from _from_hf_dataset(path, roots)
        elif path.is_dir():
            yield from _from_folder(path)
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            yield from _from_manifest(path, roots)
        elif path.suffix.lower() == SHARD_SUFFIX:
            yield from _from_shard(path)
        elif path.suffix.lower() == ".json":
            yield from _from_msrvtt(path, roots)
        elif path.suffix.lower() == ".txt":
            yield from _from_split_list(path, roots)
        else:
            yield _file_candidate(str(path.resolve()), str(path.resolve()))


def _from_folder(folder: Path) -> Iterator[Candidate]:
    """Every file below ``folder``; webdataset shards are read sample by sample. A folder whose top
    level holds folders only is a class-folder tree (UCF-101: ``ApplyEyeMakeup/v_..._g01_c01.avi``):
    each file's label is the name of the top-level folder it sits in."""
    source = str(folder.resolve())
    class_tree = not any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        relative = Path(dirpath).relative_to(folder).parts
        label = relative[0] if class_tree and relative else None
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() == SHARD_SUFFIX:
                yield from _from_shard(path)
            else:
                yield _file_candidate(source, str(path.resolve()), label=label)


def _file_candidate(source: str, path: str, caption: str | None = None, label: str | None = None) -> Candidate:
    kind = media_kind(path)
    cand = Candidate(source=source, source_uri=path, path=path, kind=kind, caption=caption, label=label)
    if kind is None:
        cand.reject = f"not a video or image (extension {Path(path).suffix or 'none'!r})"
    return cand


def _read_manifest(path: Path) -> pa.Table:
    fmt = MANIFEST_SUFFIXES[path.suffix.lower()]
    try:
        if fmt == "csv":
            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        if fmt == "parquet":
            return pq.read_table(path)
        return pajson.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"manifest {path} cannot be read: {str(exc).splitlines()[0]}") from exc


def _from_manifest(path: Path, roots: list[Path]) -> Iterator[Candidate]:
    table = _read_manifest(path)
    path_col = _pick(table.column_names, PATH_COLUMNS)
    if path_col is None:
        raise SourceError(f"manifest {path} needs a 'path' column (has: {', '.join(table.column_names)})")
    caption_col = _pick(table.column_names, CAPTION_COLUMNS)
    source = str(path.resolve())
    for row in table.to_pylist():
        raw = row[path_col]
        caption = _clean(row.get(caption_col)) if caption_col else None
        label = _clean(row.get("label"))
        if not raw:
            yield Candidate(source=source, source_uri=f"{source}#row", reject="manifest row has an empty path",
                            caption=caption, label=label)
            continue
        resolved = (path.parent / str(raw)).expanduser().resolve()  # resolve() follows symlinks and '..'
        cand = _file_candidate(source, str(resolved), caption, label)
        if not any(_inside(resolved, r) for r in roots):
            cand.reject = f"path {raw!r} resolves outside the source roots"
        elif not resolved.is_file():
            cand.reject = f"path {raw!r} does not exist"
        yield cand


def _from_shard(path: Path) -> Iterator[Candidate]:
    """The samples of one webdataset tar shard, read in order from the tar stream (nothing is
    unpacked to disk): ``{key}.mp4`` / ``.jpg`` ... with the caption in ``.txt`` or in the
    ``.json``'s caption field (video2dataset, img2dataset)."""
    import webdataset as wds

    source = str(path.resolve())
    try:
        for sample in wds.WebDataset(source, shardshuffle=False, empty_check=False):
            yield _shard_candidate(source, sample)
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise SourceError(f"shard {path} cannot be read: {str(exc).splitlines()[0]}") from exc


def _shard_candidate(source: str, sample: dict) -> Candidate:
    uri = f"{source}#{sample['__key__']}"
    meta = json.loads(sample["json"]) if "json" in sample else {}
    caption = _clean(sample["txt"].decode("utf-8", "replace")) if "txt" in sample else None
    caption = caption or _clean(meta.get("caption"))
    label = _clean(meta.get("label"))
    media = [ext for ext in sample if not ext.startswith("__") and media_kind(f"x.{ext}")]
    if not media:
        fields = ", ".join(ext for ext in sample if not ext.startswith("__"))
        return Candidate(source=source, source_uri=uri, caption=caption, label=label,
                         reject=f"shard sample has no video or image (has: {fields or 'nothing'})")
    ext = media[0]
    return Candidate(source=source, source_uri=f"{uri}.{ext}", data=sample[ext], kind=media_kind(f"x.{ext}"),
                     caption=caption, label=label)


def _from_split_list(path: Path, roots: list[Path]) -> Iterator[Candidate]:
    """A UCF-101 split list (``trainlist01.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``;
    ``testlist01.txt`` without the class index): only the videos it names, labelled by their
    folder. Paths are relative to the list's folder or, as the official ``ucfTrainTestlist/``
    sits beside ``UCF-101/``, to a folder next to it (pass the common parent with ``--source-root``)."""
    source = str(path.resolve())
    bases = [path.parent, *sorted(p for p in path.parent.parent.iterdir() if p.is_dir() and p != path.parent)]
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        relative = line.split()[0]
        if len(Path(relative).parts) != 2:
            raise SourceError(f"{path}:{number}: expected 'Class/video.avi [index]' (a UCF-101 split list), got {line!r}")
        found = next((base / relative for base in bases if (base / relative).is_file()), None)
        label = Path(relative).parts[0]
        if found is None:
            yield Candidate(source=source, source_uri=f"{source}#{relative}", label=label,
                            reject=f"path {relative!r} does not exist")
            continue
        resolved = found.resolve()
        cand = _file_candidate(source, str(resolved), label=label)
        if not any(_inside(resolved, r) for r in roots):
            cand.reject = f"path {relative!r} resolves outside the source roots"
        yield cand


def _from_msrvtt(path: Path, roots: list[Path]) -> Iterator[Candidate]:
    """MSR-VTT's annotation JSON (``videos`` and ``sentences``, ~20 captions per video): one
    candidate per caption, like a manifest that names a file once per caption (the media is stored
    once). ``<video_id>.mp4`` is looked for anywhere below the JSON's folder (``TrainValVideo/``)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"annotation file {path} cannot be read: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not {"videos", "sentences"} <= set(data):
        raise SourceError(f"{path}: a JSON source must be MSR-VTT's annotation file ('videos' and 'sentences')")
    files: dict[str, Path] = {}
    for dirpath, _, filenames in os.walk(path.parent):
        for name in filenames:
            if media_kind(name) == "video":
                files.setdefault(Path(name).stem, Path(dirpath) / name)
    source = str(path.resolve())
    known = {video["video_id"] for video in data["videos"]}
    for sentence in data["sentences"]:
        video_id, caption = sentence.get("video_id"), _clean(sentence.get("caption"))
        if video_id not in known or video_id not in files:
            reason = "is not among the annotation's videos" if video_id not in known else "has no video file"
            yield Candidate(source=source, source_uri=f"{source}#{video_id}", caption=caption,
                            reject=f"video {video_id!r} {reason}")
            continue
        resolved = files[video_id].resolve()
        cand = _file_candidate(source, str(resolved), caption)
        if not any(_inside(resolved, r) for r in roots):
            cand.reject = f"video {video_id!r} resolves outside the source roots"
        yield cand


def _is_hf_dataset(folder: Path) -> bool:
    return (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists()


def _from_hf_dataset(folder: Path, roots: list[Path]) -> Iterator[Candidate]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:
        raise SourceError(f"dataset {folder} cannot be loaded: {exc}") from exc
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    source = str(folder.resolve())
    for split, ds in splits:
        yield from _hf_rows(ds, source, split, roots)


def _hf_rows(ds, source: str, split: str | None, roots: list[Path]) -> Iterator[Candidate]:
    import datasets

    features = ds.features
    media_col = next((n for n, f in features.items() if isinstance(f, datasets.Image)), None)
    if media_col is not None:
        ds = ds.cast_column(media_col, datasets.Image(decode=False))  # bytes, not PIL objects
    else:
        media_col = _pick(list(features), PATH_COLUMNS)
    if media_col is None:
        raise SourceError(f"dataset {source} has no image feature or path column (has: {', '.join(features)})")
    caption_col = _pick(list(features), CAPTION_COLUMNS)
    label_feature = features.get("label")
    prefix = f"{source}[{split}]" if split else source
    for index, row in enumerate(ds):
        caption = _clean(row.get(caption_col)) if caption_col else None
        label = row.get("label")
        if isinstance(label_feature, datasets.ClassLabel) and label is not None:
            label = label_feature.int2str(label)
        label = _clean(label)
        value = row[media_col]
        uri = f"{prefix}#{index}"
        if isinstance(value, dict):  # datasets.Image(decode=False): {"bytes", "path"}
            if value.get("bytes"):
                yield Candidate(source=source, source_uri=uri, data=value["bytes"], kind="image",
                                caption=caption, label=label)
                continue
            value = value.get("path")
        if not value:
            yield Candidate(source=source, source_uri=uri, reject="dataset row has no media", caption=caption,
                            label=label)
            continue
        resolved = (Path(source) / str(value)).resolve()
        cand = _file_candidate(source, str(resolved), caption, label)
        if not any(_inside(resolved, r) for r in roots):
            cand.reject = f"path {value!r} resolves outside the source roots"
        yield cand


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lowered = {n.lower(): n for n in names}
    return next((lowered[w] for w in wanted if w in lowered), None)


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
