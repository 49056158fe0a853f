import pyarrow as pa
import pytest

from storage.catalog import Catalog, CatalogError
from storage.location import StorageLocation


def _rows(*ids_and_captions):
    return [
        {"id": i, "kind": "image", "sha256": f"sha-{i}", "blob": f"blobs/{i}", "source": "s", "source_uri": f"/s/{i}",
         "bytes": 10, "caption": caption}
        for i, caption in ids_and_captions
    ]


def test_versions_upsert_and_idempotence(tmp_path):
    catalog = Catalog(str(tmp_path / "root"))
    assert catalog.read("samples").num_rows == 0
    v1 = catalog.write("samples", _rows(("a", "one"), ("b", "two")), run_id="r1", config_hash="h1")
    assert (v1.version, v1.parent, v1.row_counts) == (1, None, {"added": 2, "updated": 0, "unchanged": 0, "total": 2})

    v2 = catalog.write("samples", _rows(("a", "one"), ("b", "two")), run_id="r2")
    assert v2.row_counts == {"added": 0, "updated": 0, "unchanged": 2, "total": 2}
    assert v2.files == v1.files, "an idempotent rerun writes no data"

    v3 = catalog.write("samples", _rows(("b", "TWO"), ("c", "three")), run_id="r3")
    assert v3.parent == 2
    assert v3.row_counts == {"added": 1, "updated": 1, "unchanged": 0, "total": 3}

    latest = {r["id"]: r["caption"] for r in catalog.read("samples").to_pylist()}
    assert latest == {"a": "one", "b": "TWO", "c": "three"}
    first = {r["id"]: r["caption"] for r in catalog.read("samples", version=1).to_pylist()}
    assert first == {"a": "one", "b": "two"}
    assert [m.run_id for m in catalog.versions("samples")] == ["r1", "r2", "r3"]
    assert catalog.tables() == ["samples"]


def test_duplicate_ids_in_one_write_keep_the_last(tmp_path):
    catalog = Catalog(str(tmp_path))
    catalog.write("samples", _rows(("a", "first"), ("a", "second")), run_id="r")
    assert catalog.read("samples").column("caption").to_pylist() == ["second"]


def test_errors_are_clear(tmp_path):
    catalog = Catalog(str(tmp_path))
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        catalog.read("nope")
    catalog.write("samples", _rows(("a", "x")), run_id="r")
    with pytest.raises(CatalogError, match="no version 7"):
        catalog.read("samples", version=7)
    with pytest.raises(CatalogError, match="not in the schema"):
        catalog.write("samples", pa.table({"id": ["a"], "surprise": [1]}), run_id="r")
    with pytest.raises(CatalogError, match="do not match"):
        catalog.write("samples", [{"id": "a", "kind": "video"}], run_id="r")


def test_file_uri_root(tmp_path):
    catalog = Catalog(StorageLocation(f"file://{tmp_path}"))
    catalog.write("samples", _rows(("a", "x")), run_id="r")
    assert (tmp_path / "catalog" / "samples.lance" / "_versions").is_dir()


def test_replace_mode_writes_exactly_the_rows(tmp_path):
    catalog = Catalog(str(tmp_path))
    catalog.write("samples", _rows(("a", "1"), ("b", "2")), run_id="r1", mode="replace")
    same = catalog.write("samples", _rows(("b", "2"), ("a", "1")), run_id="r2", mode="replace")
    assert same.row_counts["removed"] == 0 and same.files == catalog.manifest("samples", 1).files
    fewer = catalog.write("samples", _rows(("a", "1"), ("c", "3")), run_id="r3", mode="replace")
    assert fewer.row_counts == {"added": 1, "updated": 0, "unchanged": 1, "removed": 1, "total": 2}
    assert catalog.read_ids("samples") == {"a", "c"}
    assert catalog.read_ids("samples", version=2) == {"a", "b"}
