"""dream.read_movie / dream.MovieWriter / dream.movie_info against the CLI: a clip written
from Python is what `dream video` reads, and `dream video`'s output is what Python reads back,
frame count, size and rate kept; dream.video and dream.zoom give the CLI's frames bit for
bit."""
import os

import numpy as np
import pytest

import dream


def _pan(n, w=96, h=64):
    """A smooth synthetic pan: frame t is frame 0 moved 2 px left."""
    y, x = np.mgrid[0:h, 0:w + 2 * n].astype(np.float32)
    big = np.stack([128 + 90 * np.sin(x / 7.0), 128 + 90 * np.cos(y / 5.0),
                    (x + y) % 256], axis=2)
    return [big[:, 2 * t:2 * t + w] for t in range(n)]


def test_numbered_images_round_trip_exactly(tmp_path):
    frames = _pan(4)
    pat = str(tmp_path / "f_%04d.png")
    with dream.MovieWriter(pat, 96, 64, 10) as mw:
        for f in frames:
            mw.write(f)
        assert mw.frames == 4
    assert os.path.exists(tmp_path / "f_0001.png") and os.path.exists(tmp_path / "f_0004.png")
    back = list(dream.read_movie(pat))
    assert len(back) == 4
    for a, b in zip(frames, back):
        assert np.array_equal(np.rint(a).astype(np.uint8), b)


def test_movie_written_by_python_is_dreamed_by_the_cli(cli, tmp_path):
    src = str(tmp_path / "in.mkv")
    with dream.MovieWriter(src, 96, 64, 12) as mw:
        for f in _pan(6):
            mw.write(f)
    info = dream.movie_info(src)
    assert (info.w, info.h, info.frames, info.has_audio) == (96, 64, 6, False)
    assert abs(info.fps - 12) < 1e-3
    out = str(tmp_path / "out.mp4")
    cli("video", "-q", "-m", "squeezenet", "--octaves", "2", "--iters", "2", src, out)
    got = list(dream.read_movie(out))
    assert len(got) == 6 and got[0].shape == (64, 96, 3)
    assert abs(dream.movie_info(out).fps - 12) < 1e-6
    # the dream changed the frames
    first = next(dream.read_movie(src))
    assert np.abs(got[0].astype(int) - first.astype(int)).mean() > 2


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"not a movie")
    with pytest.raises(dream.Error) as e:
        list(dream.read_movie(str(bad)))
    assert "notes.mp4" in str(e.value) and e.value.code == dream.EFORMAT
    with pytest.raises(dream.Error) as e:
        dream.MovieWriter(str(tmp_path / "x.avi2"), 32, 32, 10)
    assert e.value.code == dream.EUNSUPPORTED
    # an exception inside the block leaves no file
    with pytest.raises(RuntimeError):
        with dream.MovieWriter(str(tmp_path / "gone.mkv"), 96, 64, 10) as mw:
            mw.write(_pan(1)[0])
            raise RuntimeError("stop")
    assert not [p for p in os.listdir(tmp_path) if p.startswith("gone")]


@pytest.mark.parametrize("opts,kw", [
    ([], {}),
    (["--no-flow", "--blend", "0.4"], dict(flow=False, blend=0.4)),
    (["--flow-threshold", "0.5", "--blend-static", "0.2", "--carried-iters", "1", "--seed", "7"],
     dict(flow_threshold=0.5, blend_static=0.2, carried_iters=1, seed=7)),
], ids=["flow", "no-flow", "threshold"])
def test_video_gives_the_clis_frames(cli, squeezenet, tmp_path, opts, kw):
    """dream.video on the frames of a clip gives `dream video`'s numbered frames bit for bit,
    and the hallucination is carried (frames after the first differ from dreaming each alone)."""
    src = str(tmp_path / "in_%04d.png")
    with dream.MovieWriter(src, 96, 64, 10) as mw:
        for f in _pan(4):
            mw.write(f)
    out = str(tmp_path / "out_%04d.png")
    cli("video", "-q", "-m", "squeezenet", "--octaves", "2", "--iters", "2", *opts, src, out)
    want = list(dream.read_movie(out))
    seen = []
    got = list(dream.video(dream.read_movie(src), model=squeezenet, octaves=2, iters=2,
                           progress=lambda t, p: seen.append(t), **kw))
    assert len(got) == len(want) == 4
    for t, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(a, b), "frame %d differs" % t
    assert sorted(set(seen)) == [0, 1, 2, 3]
    alone = dream.dream(next(dream.read_movie(src, dtype=np.float32)), model=squeezenet,
                        octaves=2, iters=2, seed=kw.get("seed", 0))
    assert np.array_equal(alone, got[0])


@pytest.mark.parametrize("opts,kw", [
    (["--octaves", "2"], dict(octaves=2)),
    (["--zoom", "0.1", "--rotate", "4", "--seed", "3", "--octaves", "1"],
     dict(zoom=0.1, rotate=4, seed=3, octaves=1)),
], ids=["default", "rotate"])
def test_zoom_gives_the_clis_frames(cli, squeezenet, photo, tmp_path, opts, kw):
    out = str(tmp_path / "z_%04d.png")
    cli("zoom", "-q", "-m", "squeezenet", "--iters", "2", "--frames", "3", "--max-side", "80",
        *opts, photo[0], out)
    want = list(dream.read_movie(out))
    got = list(dream.zoom(photo[1], 3, model=squeezenet, iters=2, max_side=80, **kw))
    assert len(got) == len(want) == 3
    for t, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(a, b), "frame %d differs" % t


def test_video_and_zoom_refuse_nonsense(squeezenet):
    with pytest.raises(dream.Error) as e:
        list(dream.video(_pan(2), model=squeezenet, max_side=32))
    assert "max_side" in str(e.value)
    with pytest.raises(dream.Error) as e:
        list(dream.zoom(_pan(1)[0], 0, model=squeezenet))
    assert "frames" in str(e.value)
    frames = _pan(2) + [np.zeros((32, 32, 3), np.uint8)]
    with pytest.raises(dream.Error) as e:
        list(dream.video(frames, model=squeezenet, octaves=1, iters=1))
    assert "frame 2 is 32x32" in str(e.value)
