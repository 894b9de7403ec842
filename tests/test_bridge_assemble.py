"""Shot assembly along the timeline and MP4 writing (H.264 yuv420p + AAC)."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.assemble import AssemblyError, assemble_shots, write_mp4


def _const(value, n, h=16, w=24):
    return np.full((n, h, w, 3), value, np.uint8)


def test_cut_and_crossfade_weights():
    # shot 0 frames 0..9, shot 1 enters by a crossfade overlapping frames 6..9, shot 2 by a cut
    shots = [(np.arange(0, 10), _const(200, 10)), (np.arange(6, 16), _const(0, 10)),
             (np.arange(16, 20), _const(100, 4))]
    tr = [{"type": "cut"}, {"type": "crossfade", "seconds": 0.2}, {"type": "cut"}]
    out = assemble_shots(shots, tr, 20)
    v = out[:, 0, 0, 0].astype(int)
    assert (v[:6] == 200).all() and (v[10:16] == 0).all() and (v[16:] == 100).all()
    # linear ramp over the 4 overlapping frames: 200 * (1 - k/5), k = 1..4
    assert np.array_equal(v[6:10], [160, 120, 80, 40])


def test_uncovered_frames_and_shape_mismatch_raise():
    with pytest.raises(AssemblyError, match="not covered"):
        assemble_shots([(np.arange(0, 5), _const(1, 5))], [{"type": "cut"}], 8)
    with pytest.raises(AssemblyError, match="differ in shape"):
        assemble_shots([(np.arange(0, 2), _const(1, 2)), (np.arange(2, 4), _const(1, 2, h=8))],
                       [{"type": "cut"}, {"type": "cut"}], 4)


def test_write_mp4_roundtrip(tmp_path):
    import av
    F, fps, sr = 12, 24, 48000
    frames = np.zeros((F, 33, 47, 3), np.uint8)         # odd size: padded to even
    frames[:, :, :, 0] = np.linspace(0, 255, F, dtype=np.uint8)[:, None, None]
    t = np.arange(int(F / fps * sr)) / sr
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    p = write_mp4(tmp_path / "clip.mp4", frames, fps, audio=audio, sample_rate=sr)
    with av.open(str(p)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert (v.codec_context.width, v.codec_context.height) == (48, 34)
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.codec_context.channels == 2
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == F
    assert abs(int(decoded[-1][5, 5, 0]) - 255) < 12 and int(decoded[0][5, 5, 0]) < 12
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "bad.mp4", frames.astype(np.float32), fps)
