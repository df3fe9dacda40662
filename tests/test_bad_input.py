"""Bad input of every kind, in every format: a short FormatError naming the file, or a recording
whose damage is counted and warned about; never a hang, a traceback or unbounded memory.

Every file is made here, in tmp_path. The mutation fuzz at the end runs GAITCAM_FUZZ_N
mutations per format (default 40; seed GAITCAM_FUZZ_SEED, default 0). A long run:

    GAITCAM_FUZZ_N=5000 python -m pytest -q tests/test_bad_input.py -k fuzz
"""
import base64
import gzip
import json
import os
import random
import re
import struct
import threading
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from gaitcam.errors import MAX_MESSAGE, FormatError, excerpt
from gaitcam.identity.protect import KEY_ENV
from gaitcam.recording import kgbd
from gaitcam.recording.csv_format import columns
from gaitcam.recording.formats import read_recording, write_recording
from gaitcam.recording.native import MAGIC, RecordingWriter, read_native, write_native
from gaitcam.recording.recording import (
    FPS_RANGE, IMPLAUSIBLE, MAX_ABS_TIME_S, MAX_BINARY_BYTES, MAX_TEXT_BYTES, Recording, RecordingMeta,
)
from gaitcam.recording.sealed import writing_key
from gaitcam.skeleton.layouts import AZURE_KINECT, CANONICAL as KINECT_V1, KGBD, KINECT_V2
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

FUZZ_N = int(os.environ.get("GAITCAM_FUZZ_N", "40"))
FUZZ_SEED = int(os.environ.get("GAITCAM_FUZZ_SEED", "0"))
HUGE = str(2**64)  # one past the largest 64-bit id
DIGITS = "9" * 5000  # past Python's 4300-digit int() limit


# ---- valid files, with hooks to break them ---------------------------------------------------

def _native(header: dict | bytes | None = None, chunks: list[bytes] | None = None) -> bytes:
    h = {"sensor": "demo", "layout": KINECT_V1.name, "fps": 30.0, "calibration": None, "subject": None,
         "created": None, "extra": {}, "joints": list(KINECT_V1.joints)}
    if isinstance(header, dict):
        h.update(header)
    payload = header if isinstance(header, bytes) else json.dumps(h).encode()
    return MAGIC + b"1\n" + b"".join(_record(p) for p in [payload] + (chunks if chunks is not None else [_rows()]))


def _record(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def _rows(n: int = 3, joints: int = 20, time=None, track=None, xyz=None, state=None) -> bytes:
    """A rows payload of n frames of track 0; keyword hooks replace frame 1's time, track id,
    joint 4's position, or joint 4's state."""
    times = np.arange(n) / 30.0
    tracks = np.zeros(n, np.int64)
    pos = np.tile(np.array([0.1, 0.5, 3.0], np.float32), (n, joints, 1))
    states = np.full((n, joints), 2, np.int8)
    if time is not None:
        times[1] = time
    if track is not None:
        tracks[1] = track
    if xyz is not None:
        pos[1, 4] = xyz
    if state is not None:
        states[1, 4] = state
    return (struct.pack("<II", n, joints) + times.astype("<f8").tobytes() + tracks.astype("<i8").tobytes()
            + pos.astype("<f4").tobytes() + states.tobytes())


def _ntu(frames: int = 3, body: str = "72057594037931101", joints: int = 25, count: str | None = None,
         xyz=lambda f, j: f"{0.01 * j:.3f} {0.5 + 0.01 * f:.3f} 3.0") -> bytes:
    lines = [str(frames) if count is None else count]
    for f in range(frames):
        lines += ["1", f"{body} 0 0 0 0 0 0 0 0 2", str(joints)]
        lines += [f"{xyz(f, j)} 0 0 0 0 0 0 0 0 2" for j in range(joints)]
    return ("\n".join(lines) + "\n").encode()


def _azure_doc(frames: int = 3, body_id: object = 1, ts=lambda f: f * 33333,
               pos=lambda f, j: [10.0 * j, -500.0, 3000.0 + f]) -> dict:
    return {"joint_names": list(AZURE_KINECT.joints),
            "frames": [{"timestamp_usec": ts(f), "num_bodies": 1,
                        "bodies": [{"body_id": body_id, "joint_positions": [pos(f, j) for j in range(32)]}]}
                       for f in range(frames)]}


def _azure(**hooks) -> bytes:
    return json.dumps(_azure_doc(**hooks)).encode()


def _csv(frames: int = 3, fps: str = "30", track: str = "1", time=lambda f: repr(f / 30),
         cell=lambda f, j: f"{0.01 * j},{0.5 + 0.01 * f},3,2", n_joints: int = 25) -> bytes:
    lines = [f"# gaitcam-csv v1 layout=kinect_v2 fps={fps} sensor=demo", ",".join(columns(KINECT_V2))]
    lines += [",".join([time(f), track] + [cell(f, j) for j in range(n_joints)]) for f in range(frames)]
    return ("\n".join(lines) + "\n").encode()


def _kgbd(frames: int = 3, xyz=lambda f, j: f"{0.01 * j};{0.5 + 0.01 * f};2.5") -> bytes:
    return "".join(f"{name};{xyz(f, j)}\n" for f in range(frames) for j, name in enumerate(KGBD.joints)).encode()


def _deep(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


# ---- what every outcome must look like ------------------------------------------------------

def _assert_short_error(err: FormatError, path: Path) -> None:
    text = str(err)
    assert type(err) is FormatError and text.startswith(str(path)), text
    assert len(text) <= len(str(path)) + MAX_MESSAGE + 12 and "\n" not in text, text[:400]


def _assert_sane(rec: Recording) -> None:
    """What every successful read promises the app (no NaN times, no inf joints read as tracked)."""
    assert FPS_RANGE[0] <= rec.meta.fps <= FPS_RANGE[1]
    for seq in rec.tracks.values():
        assert np.isfinite(seq.timestamps).all() and (np.abs(seq.timestamps) <= MAX_ABS_TIME_S).all()
        assert (np.diff(seq.timestamps) > 0).all()
        assert np.isin(seq.states, [int(s) for s in JointState]).all()
        assert np.isfinite(seq.joints[seq.states != JointState.MISSING]).all()


def _read(path: Path) -> Recording | FormatError:
    try:
        rec = read_recording(path)
    except FormatError as e:
        _assert_short_error(e, path)
        return e
    _assert_sane(rec)
    return rec


def _counted(n: int, dropped: bool = True):
    """A check: the read succeeded with n implausible joints counted (made missing if dropped)."""
    def check(rec: Recording) -> None:
        assert rec.meta.extra.get(IMPLAUSIBLE) == n
        missing = sum(int((s.states == JointState.MISSING).sum()) for s in rec.tracks.values())
        assert (missing == n) if dropped else (missing == 0)
    return check


# ---- the corpus: (name, content, expected error regex, or a check of the recording) ----------

CASES = [
    # .gaitrec
    ("empty.gaitrec", b"", "empty file.*bad magic"),
    ("fps0.gaitrec", _native({"fps": 0}), "fps 0.0 is not a usable frame rate"),
    ("fpsneg.gaitrec", _native({"fps": -30}), "fps -30.0 is not"),
    ("fpsnan.gaitrec", _native({"fps": float("nan")}), "fps nan is not"),
    ("fpsinf.gaitrec", _native({"fps": float("inf")}), "fps inf is not"),
    ("fpstext.gaitrec", _native({"fps": "abc"}), "corrupt header record"),
    ("deep.gaitrec", _native(b'{"sensor": ' + _deep() + b"}"), "nested too deeply"),
    ("hugeint.gaitrec", _native(b'{"fps": ' + DIGITS.encode() + b"}"), "corrupt header record"),
    ("calib.gaitrec", _native({"calibration": [1, 2]}), "calibration is not an object"),
    ("floor.gaitrec", _native({"calibration": {"floor": [0, 1, "x", 0.9]}}), "floor is not 4 finite numbers"),
    ("subject.gaitrec", _native({"subject": {"a": 1}}), "subject is not text"),
    ("layout.gaitrec", _native({"layout": "kinect_v9"}), "unknown joint layout"),
    ("time1e300.gaitrec", _native(chunks=[_rows(time=1e300)]), "1e\\+300 s in row 1 is not a plausible time"),
    ("timenan.gaitrec", _native(chunks=[_rows(time=float("nan"))]), "time is not finite in row 1"),
    ("back.gaitrec", _native(chunks=[_rows(time=-1.0)]), "time does not increase"),
    ("state.gaitrec", _native(chunks=[_rows(state=9)]), "a joint state is not one of"),
    ("joints.gaitrec", _native(chunks=[_rows(joints=19)]), "rows of 19 joints do not fit"),
    ("inf.gaitrec", _native(chunks=[_rows(xyz=np.inf)]), _counted(1)),
    ("nantracked.gaitrec", _native(chunks=[_rows(xyz=np.nan)]), _counted(1)),
    ("far.gaitrec", _native(chunks=[_rows(xyz=[0, 0, 150.0])]), _counted(1, dropped=False)),  # lossless: kept
    ("bigid.gaitrec", _native(chunks=[_rows(track=2**63 - 1)]), lambda rec: set(rec.tracks) == {0, 2**63 - 1}),
    ("cut.gaitrec", _native()[:-7], lambda rec: rec.meta.extra["truncated_tail_bytes"] > 0 and not rec.tracks),
    # NTU .skeleton
    ("empty.skeleton", b"", "truncated file.*empty"),
    ("blank.skeleton", b"\n \n", "empty"),
    ("cut.skeleton", _ntu()[:-200], "truncated file: ends where joint|expected 12 values"),
    ("joints.skeleton", _ntu(joints=24), "expected 25 joints"),
    ("bodyid.skeleton", _ntu(body=HUGE), "bodyID '18446744073709551616' does not fit in 64 bits"),
    ("bodydigits.skeleton", _ntu(body="9" * 25), "bodyID '9{25}' does not fit in 64 bits"),
    ("count.skeleton", _ntu(count=DIGITS), "expected the frame count"),
    ("longline.skeleton", _ntu(count="3 " + "x" * 100_000), "a line of 100002 characters"),
    ("nul.skeleton", b"3\n1\n\0\0", "cannot read as NTU text: binary data.*NUL byte at byte 4"),
    ("nan.skeleton", _ntu(xyz=lambda f, j: "nan 0 3" if j == 3 else "0.1 0.5 3"), "position is not finite"),
    ("e300.skeleton", _ntu(xyz=lambda f, j: "1e300 0 3" if (f, j) == (1, 3) else "0.1 0.5 3"), _counted(1)),
    ("far.skeleton", _ntu(xyz=lambda f, j: "0 0 50" if (f, j) == (1, 3) else "0.1 0.5 3"), _counted(1)),
    ("zeros.skeleton", _ntu(xyz=lambda f, j: "0 0 0"), _counted(3 * 25)),
    # Azure Kinect JSON
    ("empty.json", b"", "empty file, not valid JSON"),
    ("deep.json", _deep(), "nested too deeply"),
    ("deepframe.json", _azure().replace(b'"num_bodies": 1', b'"num_bodies": ' + _deep(500)),
     r"num_bodies is \[\[\[\.\.\.\]\]\] but 1"),
    ("digits.json", _azure().replace(b'"body_id": 1', b'"body_id": ' + DIGITS.encode()), "not valid JSON"),
    ("bodyid.json", _azure(body_id=2**64), "body_id is not a 64-bit integer: 18446744073709551616"),
    ("bodytext.json", _azure(body_id="x"), "body_id is not a 64-bit integer: 'x'"),
    ("bodyfloat.json", _azure(body_id=1.5), "body_id is not a 64-bit integer: 1.5"),
    ("bodybool.json", _azure(body_id=True), "body_id is not a 64-bit integer: True"),
    ("bodyinf.json", _azure(body_id=float("inf")), "body_id is not a 64-bit integer: inf"),
    ("ts1e300.json", _azure(ts=lambda f: f * 1e300), "not a plausible time"),
    ("tsnan.json", _azure(ts=lambda f: float("nan")), "time is not finite"),
    ("tsbigint.json", _azure(ts=lambda f: 10**400 * f), r"frames\[1\]: malformed frame \(OverflowError"),
    ("posinf.json", _azure(pos=lambda f, j: [1e400, 0, 0] if j == 3 else [0, 0, 3000]), "not finite"),
    ("posbigint.json", _azure(pos=lambda f, j: [10**400, 0, 0] if j == 3 else [0, 0, 3000]), "OverflowError"),
    ("posbool.json", _azure(pos=lambda f, j: [True, 0, 0]), r"joint 0 is not \[x, y, z\] numbers"),
    ("joints.json", json.dumps({**_azure_doc(), "joint_names": list(AZURE_KINECT.joints)[:31]}).encode(),
     "31 names"),
    ("cut.json", _azure()[:-50], "not valid JSON"),
    ("nul.json", b'{"a": "\0"}', "binary data"),
    ("far.json", _azure(pos=lambda f, j: [0, 0, 20_000] if (f, j) == (2, 5) else [0, 0, 3000]), _counted(1)),
    ("zeros.json", _azure(pos=lambda f, j: [0, 0, 0]), _counted(3 * 32)),
    # gaitcam CSV
    ("empty.csv", b"", "first line is not.*empty"),
    ("fps0.csv", _csv(fps="0"), "fps 0.0 is not a usable frame rate"),
    ("fpsneg.csv", _csv(fps="-5"), "fps -5.0 is not"),
    ("fpsnan.csv", _csv(fps="nan"), "fps nan is not"),
    ("fpsinf.csv", _csv(fps="inf"), "fps inf is not"),
    ("track.csv", _csv(track=str(2**63)), "track id 9223372036854775808 does not fit in 64 bits"),
    ("trackdigits.csv", _csv(track=DIGITS), "not a number"),
    ("time1e300.csv", _csv(time=lambda f: "1e300"), "time 1e\\+300 s is not a plausible time"),
    ("timenan.csv", _csv(time=lambda f: "nan"), "time nan s is not a plausible time"),
    ("timeinf.csv", _csv(time=lambda f: "-inf"), "time -inf s is not a plausible time"),
    ("joints.csv", _csv(n_joints=24), "expected 102 values, found 98"),
    ("cut.csv", _csv()[:-9], "expected 102 values, found 100"),
    ("inf.csv", _csv(cell=lambda f, j: "inf,0,3,2"), "has no finite"),
    ("state.csv", _csv(cell=lambda f, j: f"0.1,0.5,3,{HUGE}"), "not a number"),
    ("comment.csv", b"# gaitcam-csv v1 " + b"x" * 100_000, "first line is not"),
    ("nul.csv", _csv() + b"\0", "binary data"),
    ("far.csv", _csv(cell=lambda f, j: "0,0,500,2" if (f, j) == (0, 0) else "0.1,0.5,3,2"), _counted(1, False)),
    ("zeros.csv", _csv(cell=lambda f, j: "0,0,0,2"), _counted(3 * 25, dropped=False)),
    # KGBD text
    ("empty.txt", b"", "empty file"),
    ("cut.txt", _kgbd()[:-30], "truncated last frame|expected 4 fields|not a number"),
    ("nul.txt", _kgbd() + b"\0" * 100, "binary data"),
    ("nan.txt", _kgbd(xyz=lambda f, j: "nan;0;2.5"), "not finite"),
    ("e300.txt", _kgbd(xyz=lambda f, j: "1e300;0;2.5" if (f, j) == (1, 1) else "0.1;0.5;2.5"), _counted(1)),
    ("far.txt", _kgbd(xyz=lambda f, j: "0;0;12" if (f, j) == (1, 1) else "0.1;0.5;2.5"), _counted(1)),
    ("zeros.txt", _kgbd(xyz=lambda f, j: "0;0;0"), _counted(3 * 20)),
    ("cut.txt.gz", gzip.compress(_kgbd())[:-10], "corrupt or truncated gzip"),
    # any name
    ("notes.md", b"# notes\n", "unknown recording format"),
    ("noext", b"\x00\x01\x02", "unknown recording format"),
]


@pytest.mark.parametrize(("name", "content", "expect"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, name, content, expect):
    path = tmp_path / name
    path.write_bytes(content)
    got = _read(path)
    if isinstance(expect, str):
        assert isinstance(got, FormatError), f"read without error: {got}"
        assert re.search(expect, str(got)), str(got)
    else:
        assert not isinstance(got, FormatError), str(got)
        assert expect(got) is not False


def test_implausible_joints_are_a_visible_warning_and_not_written_on(tmp_path, caplog):
    path = tmp_path / "far.skeleton"
    path.write_bytes(_ntu(xyz=lambda f, j: "0 0 50" if j == 2 else "0.1 0.5 3"))
    rec = read_recording(path)
    assert "far.skeleton: 3 implausible joint positions (3 beyond 10 m): read as missing" in caplog.text
    write_recording(rec, tmp_path / "copy.gaitrec")  # the copy holds them missing: the note would be false
    assert IMPLAUSIBLE not in read_recording(tmp_path / "copy.gaitrec").meta.extra


# ---- files that are not files, or too big ---------------------------------------------------

def _in_thread(path: Path, seconds: float = 10.0) -> Recording | FormatError:
    """_read(path), failing the test (instead of hanging it) if it has not returned in time."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(_catch(path)), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive() and path.exists():  # unblock a reader stuck on a FIFO, then fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert out, f"reading {path} did not return within {seconds} s"
    if isinstance(out[0], BaseException) and not isinstance(out[0], FormatError):
        raise out[0]
    return out[0]


def _catch(path: Path):
    try:
        return _read(path)
    except BaseException as e:  # noqa: BLE001 -- handed to the test's thread to re-raise
        return e


@pytest.mark.parametrize("name", ["pipe.gaitrec", "pipe.json", "pipe.csv", "pipe.skeleton", "pipe.txt", "pipe"])
def test_a_fifo_is_refused_at_once(tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)
    got = _in_thread(path)
    assert isinstance(got, FormatError) and "not a regular file but a FIFO" in str(got), got


@pytest.mark.parametrize("name", ["zero.gaitrec", "zero.json", "zero.csv", "zero.skeleton", "zero.txt.gz"])
def test_devices_and_folders_are_refused(tmp_path, name):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    (tmp_path / name).symlink_to("/dev/zero")
    got = _in_thread(tmp_path / name)
    assert isinstance(got, FormatError) and "not a regular file but a character device" in str(got), got
    (tmp_path / "dir.gaitrec").mkdir()
    assert "not a regular file but a folder" in str(_in_thread(tmp_path / "dir.gaitrec"))


@pytest.mark.parametrize("name", ["nul.gaitrec", "nul.json", "nul.csv", "nul.skeleton", "nul.txt", "nul.bin"])
def test_a_large_file_of_nul_bytes_fails_fast_in_bounded_memory(tmp_path, name):
    path = tmp_path / name
    size = 32 << 20
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: reads as NUL bytes, costs no disk
    tracemalloc.start()
    try:
        got = _read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(got, FormatError), got
    assert peak < 2 * size + (1 << 20), f"{peak / 2**20:.0f} MiB to reject a {size >> 20} MiB file"


@pytest.mark.parametrize(("name", "limit"), [("big.gaitrec", MAX_BINARY_BYTES), ("big.json", MAX_TEXT_BYTES),
                                             ("big.csv", MAX_TEXT_BYTES), ("big.skeleton", MAX_TEXT_BYTES),
                                             ("big.txt", MAX_TEXT_BYTES)])
def test_files_over_the_size_limit_are_refused_unread(tmp_path, name, limit):
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(limit + 1)  # sparse
    got = _read(path)
    assert isinstance(got, FormatError) and f"too large to read: {limit + 1} bytes" in str(got), got


def test_a_gzip_bomb_is_cut_off_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(kgbd, "MAX_TEXT_BYTES", 1 << 20)
    pack = zlib.compressobj(9, zlib.DEFLATED, 31)
    path = tmp_path / "bomb.txt.gz"
    path.write_bytes(b"".join(pack.compress(b"Head;0;0;0\n" * 100_000) for _ in range(4)) + pack.flush())
    with pytest.raises(FormatError, match="bomb.txt.gz: decompresses to over 1 MiB"):
        read_recording(path)


# ---- the error itself, and the writer ---------------------------------------------------------

def test_format_errors_are_one_short_line():
    err = FormatError("f.csv", "found " + "x\n" * 10_000, line=3)
    assert str(err).startswith("f.csv:3: found x x") and str(err).endswith("...") and "\n" not in str(err)
    assert len(str(err)) == len("f.csv:3: ") + MAX_MESSAGE
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert excerpt(deep) == "[[[...]]]" and excerpt(10**5000) == "<16610-bit integer>" and excerpt(2**64) == HUGE


@pytest.mark.parametrize("fps", [0.0, -30.0, float("nan"), float("inf")])
def test_the_writer_refuses_a_rate_the_reader_would(tmp_path, fps):
    with pytest.raises(FormatError, match="is not a usable frame rate"):
        RecordingWriter(tmp_path / "r.gaitrec", RecordingMeta("demo", KINECT_V1.name, fps))
    assert not (tmp_path / "r.gaitrec").exists()


def test_the_writer_refuses_a_track_id_beyond_64_bits(tmp_path):
    """A replay looped with fresh ids (id + loop * (max id + 1)) can pass 2**63 on."""
    from gaitcam.sensors.base import Body, Frame

    with RecordingWriter(tmp_path / "r.gaitrec", RecordingMeta("demo", KINECT_V1.name, 30.0), fsync=False) as w:
        w.write(Frame(0.0, [Body(2**63 - 1, np.ones((20, 3), np.float32))], KINECT_V1))
        with pytest.raises(FormatError, match="track id 9223372036854775808 at 0.1 s does not fit in 64 bits"):
            w.write(Frame(0.1, [Body(2**63, np.ones((20, 3), np.float32))], KINECT_V1))
    assert list(read_native(tmp_path / "r.gaitrec").tracks) == [2**63 - 1]


# ---- seeded mutation fuzz ---------------------------------------------------------------------

TOKENS = [b"nan", b"inf", b"-1", b"0", b"1e300", b"-1e308", HUGE.encode(), b"9" * 30, b"[", b"]", b"{", b"}",
          b'"', b",", b";", b"\n", b"\0", b"\xff", b"null", b"true", b" ", b"\r\n", b"1e999"]


def _recrc(data: bytes, rng: random.Random) -> bytes:
    """Change one record's payload and fix its CRC, so the parsers (not the CRC) meet the damage."""
    starts, pos = [], data.index(b"\n") + 1
    while pos + 8 <= len(data):
        n = struct.unpack_from("<I", data, pos)[0]
        if pos + 8 + n > len(data):
            break
        starts.append((pos, n))
        pos += 8 + n
    pos, n = rng.choice(starts)
    payload = bytearray(data[pos + 8:pos + 8 + n])
    for _ in range(rng.randint(1, 4)):
        payload[rng.randrange(n)] = rng.randrange(256)
    return data[:pos] + _record(bytes(payload)) + data[pos + 8 + n:]


HOSTILE = [None, True, -1, 0, 1.5, 1e308, float("nan"), float("inf"), 2**64, -2**63 - 1, 10**400, "x", "", [], {},
           [[[[]]]], [0, 0], [1e5, 1e5, 1e5]]


def _leaf(data: bytes, rng: random.Random) -> bytes:
    """JSON with one value somewhere in it replaced by a hostile one (structure kept, so the
    reader gets past the parser)."""
    doc = json.loads(data)
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return data
        key = rng.choice(keys)
        if not isinstance(node[key], (dict, list)) or not node[key] or rng.random() < 0.15:
            node[key] = rng.choice(HOSTILE)
            return json.dumps(doc).encode()
        node = node[key]


def _field(data: bytes, rng: random.Random) -> bytes:
    """Text with one whole field (a number, a name) replaced by a hostile token."""
    a, b = rng.choice([m.span() for m in re.finditer(rb"[^\s,;]+", data)])
    return data[:a] + rng.choice(TOKENS) + data[b:]


def _mutate(data: bytes, rng: random.Random, name: str) -> tuple[str, bytes]:
    special = {".gaitrec": "recrc", ".json": "leaf"}.get(Path(name).suffix, "field")
    kind = rng.choice(["flip", "truncate", "duplicate", "delete", "token"] + [special] * 4)
    i, j = sorted(rng.randrange(len(data) + 1) for _ in range(2))
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return kind, bytes(out)
    if kind == "truncate":
        return kind, data[:i]
    if kind == "duplicate":
        return kind, data[:j] + data[i:j] * rng.randint(1, 3) + data[j:]
    if kind == "delete":
        return kind, data[:i] + data[j:]
    if kind == "token":
        return kind, data[:i] + rng.choice(TOKENS) + data[i + rng.randint(0, 4):]
    return kind, {"recrc": _recrc, "leaf": _leaf, "field": _field}[kind](data, rng)


def _valid(name: str, tmp_path: Path) -> bytes:
    rng = np.random.default_rng(0)
    layout = AZURE_KINECT if name.endswith(".json") else KINECT_V2
    if name.endswith(".txt"):
        return _kgbd(frames=4)
    tracks = {tid: SkeletonSequence((rng.normal(0, 0.2, (5, layout.n_joints, 3)) + [0, 0.5, 3]).astype(np.float32),
                                    np.round(0.5 + np.arange(5) / 30, 6), layout) for tid in (1, 4)}
    path = tmp_path / f"valid{Path(name).suffix}"
    rec = Recording(RecordingMeta("demo", layout.name, 30.0), tracks)
    if ".sealed." in name:  # encrypted with the gallery key the test put in the environment
        write_native(rec, path, writing_key(encrypt=True))
    else:
        write_recording(rec, path)
    return path.read_bytes()


@pytest.mark.parametrize("name", ["fuzz.gaitrec", "fuzz.sealed.gaitrec", "fuzz.json", "fuzz.csv", "fuzz.skeleton",
                                  "fuzz.txt"])
def test_fuzz_mutations_read_or_fail_cleanly(tmp_path, monkeypatch, name):
    monkeypatch.setenv(KEY_ENV, base64.b64encode(bytes(range(32))).decode())  # for the encrypted .gaitrec
    base = _valid(name, tmp_path)
    path = tmp_path / name
    path.write_bytes(base)
    assert not isinstance(_read(path), FormatError)
    rng = random.Random(f"{FUZZ_SEED}:{name}")
    failures = []
    for i in range(FUZZ_N):
        kind, data = _mutate(base, rng, name)
        path.write_bytes(data)
        try:
            _read(path)
        except Exception as e:  # noqa: BLE001 -- anything but a short FormatError is a finding
            failures.append(f"mutation {i} ({kind}): {type(e).__name__}: {str(e)[:200]}")
    assert not failures, f"{len(failures)} of {FUZZ_N} (GAITCAM_FUZZ_SEED={FUZZ_SEED}):\n" + "\n".join(failures[:10])


REFUSED = [c for c in CASES if isinstance(c[2], str)]
# One refused file of each format, for the commands that load the model first (slower).
ONE_PER_FORMAT = [next(c for c in REFUSED if c[0].endswith(suffix))
                  for suffix in (".gaitrec", ".skeleton", ".json", ".csv", ".txt", ".txt.gz", ".md")]


def _refused_by_cli(tmp_path: Path, capsys, name: str, content: bytes, commands: list[list[str]]) -> None:
    """Each command (FILE: the bad file) exits 2 with one `error:` line naming the file, and the
    gallery is unchanged."""
    from gaitcam.cli import main
    from gaitcam.identity.gallery import Gallery

    path, db = tmp_path / name, tmp_path / "g.db"
    path.write_bytes(content)
    Gallery(db).close()
    before = db.read_bytes()
    for command in commands:
        capsys.readouterr()
        assert main([str(path) if arg == "FILE" else arg for arg in command]) == 2, command
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("INFO", "WARNING"))]
        assert len(err) == 1 and err[0].startswith("error: ") and name in err[0], (command, err)
        assert db.read_bytes() == before, command


@pytest.mark.parametrize(("name", "content", "expect"), REFUSED, ids=[c[0] for c in REFUSED])
def test_convert_refuses_every_bad_file_in_one_line(tmp_path, capsys, name, content, expect):
    from gaitcam.cli import main

    path = tmp_path / name
    path.write_bytes(content)
    assert main(["convert", str(path), str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0] and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(("name", "content", "expect"), ONE_PER_FORMAT, ids=[c[0] for c in ONE_PER_FORMAT])
def test_enroll_and_identify_refuse_a_bad_file_and_leave_the_gallery_alone(tmp_path, capsys, name, content, expect):
    db = str(tmp_path / "g.db")
    _refused_by_cli(tmp_path, capsys, name, content,
                    [["enroll", "Ada", "FILE", "--gallery", db], ["identify", "FILE", "--gallery", db]])
