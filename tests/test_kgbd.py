"""KGBD reading: real files, every kind of malformed line, and the walk list / probe split."""
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from gaitcam.errors import FormatError
from gaitcam.recording.kgbd import (
    KgbdWalk, kgbd_recording, layout_split, list_walks, probe_split, read_kgbd, split_sha256,
)
from gaitcam.skeleton.layouts import KGBD

from conftest import KGBD_ROOT
REAL_WALK = KGBD_ROOT / "Data" / "Person001" / "1.txt.gz"
needs_kgbd = pytest.mark.skipif(not REAL_WALK.is_file(), reason="KGBD data not available")


def _frame_lines(frame: int) -> list[str]:
    return [f"{name};{0.01 * i};{frame + 0.5};2.5" for i, name in enumerate(KGBD.joints)]


def _lines(frames: int = 2) -> list[str]:
    return [line for t in range(frames) for line in _frame_lines(t)]


def _walk_text(frames: int = 3, newline: str = "\n") -> str:
    return newline.join(_lines(frames)) + newline


def _write(tmp_path: Path, lines: list[str], name: str = "walk.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_kgbd
def test_real_walk_loads_and_txt_equals_gz(tmp_path):
    seq = read_kgbd(REAL_WALK)
    assert seq.layout is KGBD and seq.joints.shape[1:] == (20, 3) and len(seq) > 200
    assert np.isfinite(seq.joints).all()
    assert np.abs(seq.joints[..., :2]).max() < 3 and 0.5 < np.median(seq.joints[..., 2]) < 6  # metres
    head_y, foot_y = seq.joints[:, KGBD.index("Head"), 1], seq.joints[:, KGBD.index("Foot-Left"), 1]
    assert 1.0 < np.median(head_y - foot_y) < 2.2  # a standing person's height, roughly
    assert np.allclose(np.diff(seq.timestamps), 1 / 30) and seq.source == str(REAL_WALK)

    plain = tmp_path / "1.txt"
    plain.write_bytes(gzip.decompress(REAL_WALK.read_bytes()))
    again = read_kgbd(plain)
    assert np.array_equal(again.joints, seq.joints) and np.array_equal(again.timestamps, seq.timestamps)


def test_crlf_blank_trailing_lines_and_fps(tmp_path):
    path = tmp_path / "walk.txt"
    path.write_text(_walk_text(3, "\r\n") + "\r\n\r\n  \n", newline="")
    seq = read_kgbd(path, fps=15)
    assert seq.joints.shape == (3, 20, 3)
    assert np.allclose(seq.timestamps, [0, 1 / 15, 2 / 15])
    assert np.allclose(seq.joints[2, :, 1], 2.5) and np.isclose(seq.joints[0, 3, 0], 0.03)


def _replace(line_no: int, text: str, frames: int = 2) -> list[str]:
    lines = _lines(frames)
    lines[line_no - 1] = text
    return lines


@pytest.mark.parametrize(
    ("lines", "line_no", "words"),
    [
        (_replace(5, "Elbow-Right;0.1;abc;2.5"), 5, "not a number"),
        (_replace(7, "Wrist-Right;0.1;2.5"), 7, "expected 4 fields"),
        (_replace(23, "Neck;0.1;0.2;2.5"), 23, "unknown joint name 'Neck'"),
        (_replace(3, "Shoulder-Left;0.1;0.2;2.5"), 3, "out of order"),
        (_replace(30, "Hand-Left;nan;0.2;2.5"), 30, "not finite"),
        (_replace(31, "Spine;0.1;inf;2.5"), 31, "not finite"),
        (_lines(2)[:19] + _lines(1), 20, "has only 19 of 20 joints"),
        (_lines(1) + ["Foot-Left;0;0;0"] + _lines(1), 21, "more than 20 joints"),
        (_lines(3)[:45], 41, "truncated last frame"),
    ],
    ids=["bad-number", "3-fields", "unknown-joint", "out-of-order", "nan", "inf", "short-frame",
         "long-frame", "truncated-last-frame"],
)
def test_malformed_lines_name_file_and_line(tmp_path, lines, line_no, words):
    path = _write(tmp_path, lines, "bad_walk.txt")
    with pytest.raises(FormatError, match=words) as err:
        read_kgbd(path)
    assert err.value.line == line_no
    assert f"bad_walk.txt:{line_no}:" in str(err.value)


def test_malformed_gz_reports_the_same_line(tmp_path):
    path = tmp_path / "bad.txt.gz"
    path.write_bytes(gzip.compress("\n".join(_replace(12, "Hip-centro;1;2")).encode()))
    with pytest.raises(FormatError, match=r"bad\.txt\.gz:12: expected 4 fields"):
        read_kgbd(path)


def test_empty_file(tmp_path):
    for name, content in [("empty.txt", b""), ("blank.txt", b"\r\n\n"), ("empty.txt.gz", gzip.compress(b""))]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(FormatError, match=rf"{name}:1: empty file"):
            read_kgbd(tmp_path / name)


def test_corrupt_gzip_and_binary_files(tmp_path):
    good = gzip.compress(_walk_text(5).encode())
    cases = {
        "truncated.txt.gz": good[: len(good) // 2],
        "garbage.txt.gz": b"this is not gzip at all",
        "badcrc.txt.gz": good[:-8] + bytes(8),
        "flipped.txt.gz": good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:],  # zlib.error
        "binary.txt": gzip.compress(bytes(range(128, 256))),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(FormatError, match=name.replace(".", r"\.")):
            read_kgbd(tmp_path / name)


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="nope.txt"):
        read_kgbd(tmp_path / "nope.txt")


def _fake_tree(root: Path, walks: dict[str, list[str]]) -> Path:
    for person, files in walks.items():
        (root / "Data" / person).mkdir(parents=True)
        for name in files:
            (root / "Data" / person / name).write_text(_walk_text(1))
    return root


def test_list_walks_split_and_sha(tmp_path):
    root = _fake_tree(tmp_path, {
        "Person002": ["1.txt.gz", "2.txt.gz", "10.txt.gz", "notes.txt"],
        "Person001": ["3.txt", "1.txt", "2.txt"],
        "Person003": ["1.txt.gz"],
    })
    (root / "Data" / "README.md").write_text("not a walk")
    walks = list_walks(root)
    assert [(w.person, w.walk) for w in walks] == [
        ("Person001", 1), ("Person001", 2), ("Person001", 3),
        ("Person002", 1), ("Person002", 2), ("Person002", 10), ("Person003", 1),
    ]
    assert walks == list_walks(root / "Data")  # the Data folder itself works too
    assert walks[5] == KgbdWalk("Person002", 10, root / "Data" / "Person002" / "10.txt.gz")

    train, probes = probe_split(walks)
    assert [(w.person, w.walk) for w in probes] == [("Person001", 3), ("Person002", 10), ("Person003", 1)]
    assert len(train) == 4 and not set(train) & set(probes)

    expected = hashlib.sha256(b"Person001/3.txt\nPerson002/10.txt.gz\nPerson003/1.txt.gz").hexdigest()
    assert split_sha256(probes) == expected == split_sha256(probes[::-1])


def test_list_walks_errors(tmp_path):
    with pytest.raises(FormatError, match="no KGBD walks"):
        list_walks(_fake_tree(tmp_path / "a", {"Person001": ["notes.txt"]}))
    with pytest.raises(FormatError, match="no such folder"):
        list_walks(tmp_path / "missing")
    with pytest.raises(FormatError, match="exists twice"):
        list_walks(_fake_tree(tmp_path / "b", {"Person001": ["1.txt", "1.txt.gz"]}))


@needs_kgbd
def test_real_root_split():
    walks = list_walks(KGBD_ROOT)
    train, probes = probe_split(walks)
    assert len(walks) == 822 and len({w.person for w in walks}) == 164
    assert len(probes) == 164 and len(train) == 822 - 164
    assert len(split_sha256(probes)) == 64


def test_kgbd_recording_names_the_subject(tmp_path):
    root = _fake_tree(tmp_path, {"Person007": ["2.txt"]})
    rec = kgbd_recording(root / "Data" / "Person007" / "2.txt")
    assert (rec.meta.sensor, rec.meta.layout, rec.meta.fps, rec.meta.subject) == ("kgbd", "kgbd", 30.0, "Person007")
    assert list(rec.tracks) == [0] and len(rec.tracks[0]) == 1
    np.testing.assert_array_equal(rec.tracks[0].joints, read_kgbd(rec.path).joints)
    loose = tmp_path / "walk.txt"
    loose.write_text(_walk_text(2))
    assert kgbd_recording(loose).meta.subject is None


def test_layout_split_links_gallery_and_probe(tmp_path):
    root = _fake_tree(tmp_path / "kgbd", {"Person001": ["1.txt", "3.txt"], "Person002": ["2.txt.gz"]})
    out = tmp_path / "split"
    gallery, probe = layout_split(root, out)
    assert (gallery, probe) == (out / "gallery", out / "probe")
    links = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_symlink())
    assert links == ["gallery/Person001/1.txt", "probe/Person001/3.txt", "probe/Person002/2.txt.gz"]
    target = (probe / "Person001" / "3.txt").readlink()
    assert target.is_absolute() and target == (root / "Data" / "Person001" / "3.txt").resolve()
    assert layout_split(root, out) == (gallery, probe)  # a re-run keeps the same links
    (gallery / "Person001" / "1.txt").unlink()
    (gallery / "Person001" / "1.txt").write_text("mine")
    with pytest.raises(FormatError, match="1.txt: already exists"):
        layout_split(root, out)
