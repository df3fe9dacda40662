"""The native .gaitrec format: exact round trips, flushing, crash survival, corrupt files."""
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_recorder_after
from gaitcam.errors import FormatError
from gaitcam.recording.native import MAGIC, RecordingWriter, read_native, write_native
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.sensors.base import Body, Frame
from gaitcam.skeleton.layouts import CANONICAL, JointLayout
from gaitcam.skeleton.sequence import JointState, SkeletonSequence


def synthetic_recording(layout: JointLayout = CANONICAL, frames: int = 40, fps: float = 30.0,
                        seed: int = 0) -> Recording:
    """Two people: track 3 throughout, track 7 only in the middle; some joints missing or inferred."""
    rng = np.random.default_rng(seed)
    tracks = {}
    for tid, (start, stop) in {3: (0, frames), 7: (frames // 4, 3 * frames // 4)}.items():
        n = stop - start
        joints = rng.normal(0, 1, (n, layout.n_joints, 3)).astype(np.float32) + [0, 1, 3]
        states = rng.choice([JointState.TRACKED, JointState.INFERRED], (n, layout.n_joints)).astype(np.int8)
        joints[1, 2] = np.nan  # SkeletonSequence marks it MISSING
        times = np.round(1.5 + np.arange(start, stop) / fps, 6)  # whole µs, as Azure JSON stores them
        tracks[tid] = SkeletonSequence(joints, times, layout, states)
    meta = RecordingMeta("demo", layout.name, fps, calibration={"floor": [0.0, 1.0, 0.0, 0.9]},
                         subject="Ada", created="2024-05-01T10:00:00+00:00", extra={"note": "synthetic"})
    return Recording(meta, tracks)


def assert_same_tracks(a: Recording, b: Recording) -> None:
    """Same track ids, timestamps, states and joint values (bit for bit, NaN where NaN)."""
    assert list(a.tracks) == list(b.tracks)
    for tid, seq in a.tracks.items():
        other = b.tracks[tid]
        assert other.layout == seq.layout
        np.testing.assert_array_equal(other.timestamps, seq.timestamps)
        np.testing.assert_array_equal(other.states, seq.states)
        np.testing.assert_array_equal(other.joints, seq.joints)  # NaN equals NaN here


def test_round_trip_is_exact_with_metadata(tmp_path):
    rec = synthetic_recording()
    path = tmp_path / "r.gaitrec"
    with RecordingWriter(path, rec.meta, fsync=False) as writer:
        for frame in rec.frames():
            writer.write(frame)
    back = read_native(path)
    assert_same_tracks(rec, back)
    assert back.meta == rec.meta and back.path == path
    assert back.tracks[7].states[1, 2] == JointState.MISSING


def test_write_native_and_an_empty_recording(tmp_path):
    rec = synthetic_recording(frames=12)
    write_native(rec, tmp_path / "a.gaitrec")
    assert_same_tracks(rec, read_native(tmp_path / "a.gaitrec"))
    with RecordingWriter(tmp_path / "empty.gaitrec", rec.meta):
        pass
    empty = read_native(tmp_path / "empty.gaitrec")
    assert empty.tracks == {} and empty.meta == rec.meta
    assert all((tmp_path / f).stat().st_mode & 0o777 == 0o600 for f in ("a.gaitrec", "empty.gaitrec"))  # owner-only


def _frame(i: int, fps: float = 30.0, tracks: tuple = (0,)) -> Frame:
    return Frame(i / fps, [Body(t, np.full((20, 3), i + t / 10, np.float32)) for t in tracks], CANONICAL)


def test_chunks_are_flushed_by_recording_time(tmp_path):
    path = tmp_path / "live.gaitrec"
    with RecordingWriter(path, RecordingMeta("demo", "kinect_v1", 30.0), flush_seconds=0.5, fsync=False) as w:
        for i in range(15):  # 0 .. 14/30 s: under half a second, all buffered
            w.write(_frame(i))
        assert read_native(path).tracks == {}
        w.write(Frame(15 / 30, [], CANONICAL))  # an empty frame still advances recording time
        assert len(read_native(path).tracks[0]) == 15
        for i in range(16, 20):
            w.write(_frame(i))
        assert len(read_native(path).tracks[0]) == 15
    assert len(read_native(path).tracks[0]) == 19  # close writes the rest


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (Frame(1.0, [Body(None, np.zeros((20, 3)))], CANONICAL), "without a track id"),
        (Frame(1.0, [Body(1, np.zeros((20, 3))), Body(1, np.zeros((20, 3)))], CANONICAL), "track 1 twice"),
        (Frame(1.0, [Body(1, np.zeros((19, 3)))], CANONICAL), r"joints \(19, 3\)"),
        (Frame(1.0, [Body(1, np.zeros((20, 3)), np.zeros(19))], CANONICAL), r"states \(19,\)"),
        (Frame(0.0, [], CANONICAL), "does not follow"),
        (Frame(1.0, [], JointLayout("other", ("a",), ())), "layout 'other'"),
    ],
    ids=["no-track", "duplicate-track", "joint-count", "state-count", "time-backwards", "layout"],
)
def test_writer_rejects_bad_frames(tmp_path, frame, words):
    path = tmp_path / "bad.gaitrec"
    with RecordingWriter(path, RecordingMeta("demo", "kinect_v1", 30.0)) as w:
        w.write(_frame(0))
        with pytest.raises(FormatError, match=words) as err:
            w.write(frame)
    assert "bad.gaitrec" in str(err.value)
    assert list(read_native(path).tracks) == [0]  # nothing of the rejected frame was kept


def test_writer_rejects_bad_metadata(tmp_path):
    with pytest.raises(FormatError, match="unknown joint layout 'nope'"):
        RecordingWriter(tmp_path / "a.gaitrec", RecordingMeta("demo", "nope", 30.0))
    with pytest.raises(FormatError, match="not plain JSON"):
        RecordingWriter(tmp_path / "b.gaitrec", RecordingMeta("demo", "kinect_v1", 30.0, extra={"x": object()}))
    assert not (tmp_path / "b.gaitrec").exists()


CHILD = """
import sys, time
import numpy as np
from gaitcam.recording.native import RecordingWriter
from gaitcam.recording.recording import RecordingMeta
from gaitcam.sensors.base import Body, Frame
from gaitcam.skeleton.layouts import CANONICAL
with RecordingWriter(sys.argv[1], RecordingMeta("demo", "kinect_v1", 100.0), flush_seconds=0.5) as w:
    for i in range(100000):
        w.write(Frame(i / 100, [Body(0, np.full((20, 3), i, np.float32))], CANONICAL))
        print(i, flush=True)
        time.sleep(0.002)
"""


def test_sigkill_mid_recording_keeps_all_but_the_last_flush_interval(tmp_path):
    path = tmp_path / "killed.gaitrec"
    last = kill_recorder_after(CHILD, [str(path)], 300)  # 3 s of recording time at 100 fps
    seq = read_native(path).tracks[0]
    kept = len(seq)
    # Every frame 0.5 s (one flush interval) older than the last one seen is on disk, in order.
    assert kept >= last - 50
    np.testing.assert_array_equal(seq.timestamps, np.arange(kept) / 100)
    np.testing.assert_array_equal(seq.joints[:, 0, 0], np.arange(kept, dtype=np.float32))


def _small_file(tmp_path: Path) -> tuple[bytes, list[int]]:
    """A 4-frame file in two chunks, and the byte offsets where the header and each chunk end."""
    path = tmp_path / "small.gaitrec"
    with RecordingWriter(path, RecordingMeta("demo", "kinect_v1", 30.0), flush_seconds=1 / 30, fsync=False) as w:
        for i in range(4):
            w.write(_frame(i))
    data = path.read_bytes()
    ends, pos = [], data.index(b"\n") + 1
    while pos < len(data):
        pos += 8 + struct.unpack_from("<I", data, pos)[0]
        ends.append(pos)
    assert len(ends) == 3 and ends[-1] == len(data)
    return data, ends


def test_every_truncation_reads_a_prefix_or_fails_cleanly(tmp_path):
    data, (header_end, chunk1_end, _) = _small_file(tmp_path)
    cut = tmp_path / "cut.gaitrec"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        if n < header_end:
            with pytest.raises(FormatError, match="cut.gaitrec"):
                read_native(cut)
            continue
        rec = read_native(cut)
        complete = header_end if n < chunk1_end else chunk1_end
        frames = 0 if n < chunk1_end else 2
        assert len(rec.tracks.get(0, ())) == frames, n
        assert rec.meta.extra.get("truncated_tail_bytes", 0) == n - complete, n


def test_crc_failure_drops_the_rest_and_reports_it(tmp_path, caplog):
    data, (header_end, chunk1_end, end) = _small_file(tmp_path)
    path = tmp_path / "flipped.gaitrec"
    path.write_bytes(data[:end - 5] + bytes([data[end - 5] ^ 1]) + data[end - 4:])  # in the last chunk
    rec = read_native(path)
    assert len(rec.tracks[0]) == 2 and rec.meta.extra["truncated_tail_bytes"] == end - chunk1_end
    assert "flipped.gaitrec" in caplog.text and "dropped" in caplog.text
    path.write_bytes(data[:header_end + 20] + b"\xff" + data[header_end + 21:])  # in the first chunk
    rec = read_native(path)
    assert rec.tracks == {} and rec.meta.extra["truncated_tail_bytes"] == end - header_end


def _record(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "bad magic"),
        (b"KINECT 1\n", "bad magic"),
        (MAGIC + b"2\n" + _record(b"{}"), "unsupported .gaitrec version '2'"),
        (MAGIC + b"1\n" + _record(b"[1, 2]"), "corrupt header record"),
        (MAGIC + b"1\n" + _record(b'{"sensor": "x", "layout": "kinect_v1", "fps": 30}'), "corrupt header record"),
        (MAGIC + b"1\n" + _record(b'{"sensor": "x", "layout": "kgbd", "fps": 30, "joints": ["a"]}'),
         "joint names differ"),
        (MAGIC + b"1\n" + _record(b'{"sensor": "x", "layout": "kinect_v9", "fps": 30, "joints": []}'),
         "unknown joint layout"),
    ],
    ids=["empty", "other-magic", "version", "header-not-object", "header-no-joints", "joint-names", "layout"],
)
def test_unreadable_files_are_format_errors(tmp_path, content, words):
    path = tmp_path / "bad.gaitrec"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=words) as err:
        read_native(path)
    assert str(err.value).startswith(str(path))


def test_a_chunk_with_a_valid_crc_but_wrong_shape_is_an_error(tmp_path):
    data, (header_end, _, _) = _small_file(tmp_path)
    path = tmp_path / "odd.gaitrec"
    path.write_bytes(data[:header_end] + _record(struct.pack("<II", 1, 19) + bytes(300)))
    with pytest.raises(FormatError, match=rf"odd.gaitrec: chunk at byte {header_end}"):
        read_native(path)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="nope.gaitrec: cannot read"):
        read_native(tmp_path / "nope.gaitrec")


def test_new_recordings_go_to_an_owner_only_folder(tmp_path, caplog):
    from gaitcam.recording.native import new_recording_path

    path = new_recording_path(tmp_path / "new" / "recordings", "enroll-Ada")
    assert path.name.startswith("enroll-Ada-") and path.suffix == ".gaitrec" and not path.exists()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    new_recording_path(shared, "demo")
    assert shared.stat().st_mode & 0o777 == 0o700 and "made owner-only" in caplog.text
