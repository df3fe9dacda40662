"""Any format in, any format out: detection by content, cross-format round trips, bad input."""
import gzip
import shutil

import numpy as np
import pytest

from conftest import KGBD_ROOT
from gaitcam.errors import FormatError
from gaitcam.recording.formats import (
    AZURE_JSON, CSV, KGBD_TEXT, NATIVE, NTU, SUPPORTED, convert, detect, find_recordings, read_recording,
    write_recording,
)
from gaitcam.recording.kgbd import read_kgbd
from gaitcam.recording.ntu import read_ntu
from gaitcam.skeleton.layouts import AZURE_KINECT, KGBD, KINECT_V2

from test_native import assert_same_tracks, synthetic_recording

REAL_WALK = KGBD_ROOT / "Data" / "Person001" / "1.txt.gz"


def _kgbd_text(frames: int = 4) -> str:
    return "".join(f"{name};{0.01 * j + t};{0.123456789 * t};2.5\n"
                   for t in range(frames) for j, name in enumerate(KGBD.joints))


@pytest.fixture
def samples(tmp_path):
    """One file of every format, each under a misleading name (content must decide)."""
    files = {}
    for fmt, suffix, layout in [(NATIVE, ".gaitrec", KINECT_V2), (NTU, ".skeleton", KINECT_V2),
                                (CSV, ".csv", KINECT_V2), (AZURE_JSON, ".json", AZURE_KINECT)]:
        proper = tmp_path / f"proper{suffix}"
        write_recording(synthetic_recording(layout), proper)
        files[fmt] = tmp_path / f"renamed_{suffix[1:]}.txt"
        proper.rename(files[fmt])
    files[KGBD_TEXT] = tmp_path / "walk.dat"
    files[KGBD_TEXT].write_bytes(gzip.compress(_kgbd_text().encode()))
    return files


def test_content_decides_before_the_name(samples):
    for fmt, path in samples.items():
        assert detect(path) is fmt, path
        assert read_recording(path).tracks


def test_name_decides_when_content_cannot(tmp_path):
    for name, words in [("empty.skeleton", "truncated file"), ("empty.gaitrec", "bad magic"),
                        ("empty.csv", "first line is not"), ("empty.json", "not valid JSON"),
                        ("empty.txt", "empty file")]:
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(FormatError, match=f"{name}.*{words}"):
            read_recording(tmp_path / name)


def test_unknown_and_unsupported_input(tmp_path):
    (tmp_path / "notes.md").write_text("# just notes\n")
    with pytest.raises(FormatError, match="notes.md: unknown recording format") as err:
        read_recording(tmp_path / "notes.md")
    assert SUPPORTED in str(err.value)
    (tmp_path / "ntu.skeleton.gz").write_bytes(gzip.compress(b"1\n0\n"))
    with pytest.raises(FormatError, match="gzip-compressed, but not KGBD text"):
        read_recording(tmp_path / "ntu.skeleton.gz")
    (tmp_path / "broken.txt.gz").write_bytes(b"\x1f\x8b" + bytes(30))
    with pytest.raises(FormatError, match="broken.txt.gz"):
        read_recording(tmp_path / "broken.txt.gz")
    with pytest.raises(FormatError, match="nope.gaitrec: cannot read"):
        read_recording(tmp_path / "nope.gaitrec")


def test_native_ntu_csv_chain_is_exact(tmp_path):
    rec = synthetic_recording(KINECT_V2)
    rec.tracks = {tid: type(seq)(seq.joints, seq.timestamps - 1.5, seq.layout, seq.states)  # NTU starts at 0
                  for tid, seq in rec.tracks.items()}
    write_recording(rec, tmp_path / "a.gaitrec")
    convert(tmp_path / "a.gaitrec", tmp_path / "b.skeleton")
    convert(tmp_path / "b.skeleton", tmp_path / "c.csv")
    convert(tmp_path / "c.csv", tmp_path / "d.gaitrec")
    back = read_recording(tmp_path / "d.gaitrec")
    ntu_ids = read_ntu(tmp_path / "b.skeleton").meta.extra["ntu_body_ids"]  # tracks renumbered 0, 1
    back.tracks = {int(ntu_ids[str(tid)]): seq for tid, seq in back.tracks.items()}
    for tid, seq in rec.tracks.items():
        np.testing.assert_array_equal(back.tracks[tid].joints, seq.joints)
        np.testing.assert_array_equal(back.tracks[tid].states, seq.states)
        np.testing.assert_allclose(back.tracks[tid].timestamps, seq.timestamps, atol=1e-6)  # NTU: 1/30 s grid


def test_csv_and_native_keep_any_layout_exactly(tmp_path):
    write_recording(synthetic_recording(AZURE_KINECT), tmp_path / "a.json")
    rec = read_recording(tmp_path / "a.json")
    for dst in ("b.gaitrec", "c.csv", "d.gaitrec"):
        assert_same_tracks(rec, convert(tmp_path / "a.json", tmp_path / dst))
    assert_same_tracks(rec, read_recording(tmp_path / "c.csv"))


def test_kgbd_to_native_keeps_every_joint_value(tmp_path):
    (tmp_path / "Person004").mkdir()
    walk = tmp_path / "Person004" / "2.txt"
    walk.write_text(_kgbd_text(5))
    rec = convert(walk, tmp_path / "walk.gaitrec")
    back = read_recording(tmp_path / "walk.gaitrec")
    assert_same_tracks(rec, back)
    np.testing.assert_array_equal(back.tracks[0].joints, read_kgbd(walk).joints)
    assert (back.meta.sensor, back.meta.layout, back.meta.subject) == ("kgbd", "kgbd", "Person004")


@pytest.mark.skipif(not REAL_WALK.is_file(), reason="KGBD data not available")
def test_real_kgbd_walk_to_native_and_csv(tmp_path):
    rec = convert(REAL_WALK, tmp_path / "1.gaitrec")
    assert len(rec.tracks[0]) > 200
    assert_same_tracks(rec, read_recording(tmp_path / "1.gaitrec"))
    write_recording(rec, tmp_path / "1.csv")
    assert_same_tracks(rec, read_recording(tmp_path / "1.csv"))


def test_unwritable_names_fail_before_reading(tmp_path):
    with pytest.raises(FormatError, match=r"out.txt: cannot write this kind of file; writable: .*\.gaitrec"):
        convert(tmp_path / "missing.gaitrec", tmp_path / "out.txt")
    with pytest.raises(FormatError, match="out.bvh: cannot write"):
        write_recording(synthetic_recording(), tmp_path / "out.bvh")


def test_find_recordings_knows_every_suffix(tmp_path):
    names = ["a.gaitrec", "b.skeleton", "c.json", "d.csv", "e.txt", "f.txt.gz", "notes.md", "g.npy"]
    (tmp_path / "sub").mkdir()
    for name in names:
        (tmp_path / "sub" / name).write_text("")
    found = find_recordings([tmp_path])
    assert [p.name for p in found] == names[:6]
    single = tmp_path / "sub" / "notes.md"
    assert find_recordings([single]) == [single]  # a file named explicitly is taken as given
    with pytest.raises(FormatError, match="gone: no such file or folder"):
        find_recordings([tmp_path / "gone"])


def test_a_kgbd_file_copied_under_any_name_reads_the_same(tmp_path):
    if not REAL_WALK.is_file():
        pytest.skip("KGBD data not available")
    shutil.copy(REAL_WALK, tmp_path / "walk.bin")
    np.testing.assert_array_equal(read_recording(tmp_path / "walk.bin").tracks[0].joints, read_kgbd(REAL_WALK).joints)
