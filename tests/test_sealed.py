"""Encrypted .gaitrec recordings: the plain format's frames and crash safety, nothing readable
without the gallery's key, and every key problem or tampering one clear line."""
import base64
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_recorder_after
from gaitcam.cli import main
from gaitcam.config import Config
from gaitcam.errors import FormatError, GaitcamError
from gaitcam.identity.gallery import Gallery
from gaitcam.identity.protect import KEY_ENV, Key, find_key, key_file
from gaitcam.recording import sealed
from gaitcam.recording.formats import convert, read_recording
from gaitcam.recording.native import (
    MAGIC, RecordingWriter, content_sha256, is_sealed, read_native, rewrap_file, write_native,
)
from gaitcam.recording.recording import RecordingMeta
from test_native import _frame, assert_same_tracks, synthetic_recording


def _key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(autouse=True)
def gallery(tmp_path):
    """The configured gallery (whose key file is the key) in tmp_path; no key in the environment."""
    path = tmp_path / "gallery" / "g.db"
    sealed.use_config(lambda: Config(gallery=path))
    yield path
    sealed.use_config(None)


@pytest.fixture
def env_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, _key_text())


def _write(path: Path, frames: int = 40, **writer) -> None:
    rec = synthetic_recording(frames=frames)
    with RecordingWriter(path, rec.meta, fsync=False, key=sealed.writing_key(True), **writer) as w:
        for frame in rec.frames():
            w.write(frame)


def _records(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every record after the first line: envelope, header, chunks."""
    spans, pos = [], data.index(b"\n") + 1
    while pos < len(data):
        end = pos + 8 + struct.unpack_from("<I", data, pos)[0]
        spans.append((pos, end))
        pos = end
    return spans


def _recrc(record: bytes) -> bytes:
    """A record whose payload was changed on purpose: its CRC made to match again."""
    payload = record[8:]
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def test_round_trip_equals_the_plain_format_and_the_key_file_is_made_owner_only(tmp_path, gallery):
    rec = synthetic_recording()
    write_native(rec, tmp_path / "plain.gaitrec")
    write_native(rec, tmp_path / "sealed.gaitrec", sealed.writing_key(True))  # creates the gallery's key file
    assert key_file(gallery).stat().st_mode & 0o777 == 0o600 and gallery.parent.stat().st_mode & 0o777 == 0o700
    plain, secret = read_native(tmp_path / "plain.gaitrec"), read_recording(tmp_path / "sealed.gaitrec")
    assert_same_tracks(plain, secret)
    assert secret.meta == plain.meta == rec.meta
    assert (tmp_path / "sealed.gaitrec").stat().st_mode & 0o777 == 0o600
    assert is_sealed(tmp_path / "sealed.gaitrec") and not is_sealed(tmp_path / "plain.gaitrec")
    assert (tmp_path / "plain.gaitrec").read_bytes().startswith(MAGIC + b"1\n")  # the plain format unchanged


def test_a_keyed_gallery_without_its_key_file_gets_no_new_key_for_recordings(tmp_path, gallery):
    with Gallery(gallery) as g:
        check = g._check
    key_file(gallery).rename(tmp_path / "elsewhere.key")  # say, not restored from the backup yet
    with pytest.raises(GaitcamError, match=rf"g.db: its key file {key_file(gallery)} is missing; restore it"):
        sealed.writing_key(True)
    assert not key_file(gallery).exists()  # a new key would open neither the gallery nor its recordings
    (tmp_path / "elsewhere.key").rename(key_file(gallery))
    key_file(gallery).rename(key_file(gallery).with_name("g.db.key.new"))  # a rekey committed, not yet renamed
    key_file(gallery).write_text(_key_text())
    assert sealed.writing_key(True).passes(check)  # the gallery's key, read-only: nothing settled here
    assert key_file(gallery).with_name("g.db.key.new").exists()


@pytest.mark.parametrize("content", [b"", b"not a database, just some text"])
def test_recordings_key_a_gallery_file_not_written_yet_and_refuse_a_foreign_one(tmp_path, gallery, content):
    gallery.parent.mkdir()
    gallery.write_bytes(content)
    if content:
        with pytest.raises(GaitcamError, match="g.db: cannot read the gallery's key check"):
            sealed.writing_key(True)
    else:  # as `Gallery` leaves it for a moment: no gallery yet, so the key file is made
        assert sealed.writing_key(True).file == key_file(gallery)


def test_no_plaintext_in_the_file(tmp_path, env_key):
    rec = synthetic_recording()
    seq = rec.tracks[3]
    needles = [seq.joints[k, j].astype("<f4").tobytes() for k, j in ((0, 0), (5, 7), (30, 19))]
    needles += [seq.timestamps[:4].astype("<f8").tobytes(), b"Ada", b"synthetic", b"HipCenter", b"floor"]
    write_native(rec, tmp_path / "plain.gaitrec")
    write_native(rec, tmp_path / "sealed.gaitrec", sealed.writing_key(True))
    plain, secret = (tmp_path / "plain.gaitrec").read_bytes(), (tmp_path / "sealed.gaitrec").read_bytes()
    assert all(n in plain for n in needles)  # the search would find them
    assert not any(n in secret for n in needles)


def test_without_the_key_or_with_another_it_is_one_clear_line(tmp_path, gallery, monkeypatch):
    path = tmp_path / "r.gaitrec"
    _write(path)
    monkeypatch.setenv(KEY_ENV, _key_text())
    with pytest.raises(FormatError, match=rf"^{path}: encrypted with another key \(not the one from {KEY_ENV}\)$"):
        read_recording(path)
    monkeypatch.delenv(KEY_ENV)
    key_file(gallery).rename(tmp_path / "elsewhere.key")
    with pytest.raises(FormatError, match=rf"^{path}: encrypted recording; set {KEY_ENV} or keep the gallery's "
                       rf"key file at {key_file(gallery)}$"):
        read_recording(path)
    assert not key_file(gallery).exists()  # reading never makes a key
    monkeypatch.setenv(KEY_ENV, "not base64!")
    with pytest.raises(FormatError, match=f"{path}: {KEY_ENV}: not a gallery key"):
        read_recording(path)


def test_every_truncation_reads_a_prefix_or_fails_cleanly(tmp_path, env_key):
    path = tmp_path / "r.gaitrec"
    _write(path, frames=8, flush_seconds=2 / 30)  # chunks of 3 frames
    data = path.read_bytes()
    spans = _records(data)
    header_end = spans[1][1]
    ends = [header_end] + [end for _, end in spans[2:]]  # complete records: the header, then each chunk
    full = read_native(path)
    cut = tmp_path / "cut.gaitrec"
    rows = []  # rows kept when cut right after each record: one more chunk each time
    for n in ends:
        cut.write_bytes(data[:n])
        rows.append(sum(len(s) for s in read_native(cut).tracks.values()))
    assert rows[0] == 0 and rows == sorted(set(rows)) and rows[-1] == sum(len(s) for s in full.tracks.values())
    every_few = set(range(0, len(data), 5)) | {a + d for a, b in spans for d in (-1, 0, 1, 8, 9)}
    for n in sorted(n for n in every_few if 0 <= n < len(data)):  # every record's edges, every 5th byte between
        cut.write_bytes(data[:n])
        if n < header_end:
            with pytest.raises(FormatError, match="cut.gaitrec"):
                read_native(cut)
            continue
        rec = read_native(cut)
        complete = max(i for i, end in enumerate(ends) if end <= n)
        assert rec.meta.extra.get("truncated_tail_bytes", 0) == n - ends[complete], n
        assert sum(len(s) for s in rec.tracks.values()) == rows[complete], n
        for tid, seq in rec.tracks.items():  # a prefix of the whole, bit for bit
            np.testing.assert_array_equal(seq.joints, full.tracks[tid].joints[:len(seq)])


def test_a_flipped_byte_drops_the_rest_as_the_plain_format_does(tmp_path, env_key, caplog):
    path = tmp_path / "r.gaitrec"
    _write(path, frames=8, flush_seconds=2 / 30)
    data = path.read_bytes()
    _, _, (_, chunk1_end), (start, end), *_ = _records(data)  # envelope, header, chunk 1, chunk 2, ...
    middle = (start + end) // 2
    path.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:])  # CRC fails: cut off there
    rec = read_native(path)
    assert rec.meta.extra["truncated_tail_bytes"] == len(data) - chunk1_end and "dropped" in caplog.text
    assert len(rec.tracks[3]) == 3


@pytest.mark.parametrize("change", ["flip-and-fix-crc", "reorder", "drop-middle", "from-another-file",
                                    "envelope-of-another-file", "header-as-chunk"])
def test_tampering_is_a_clear_error(tmp_path, env_key, change):
    path, other = tmp_path / "r.gaitrec", tmp_path / "other.gaitrec"
    _write(path, frames=12, flush_seconds=2 / 30)
    _write(other, frames=12, flush_seconds=2 / 30)
    data, theirs = path.read_bytes(), other.read_bytes()
    spans, their_spans = _records(data), _records(theirs)
    line = data[:spans[0][0]]
    rec = [data[a:b] for a, b in spans]  # envelope, header, chunks 1, 2, 3, ...
    their = [theirs[a:b] for a, b in their_spans]
    flipped = bytearray(rec[3])
    flipped[len(flipped) // 2] ^= 1
    body = {
        "flip-and-fix-crc": rec[:3] + [_recrc(bytes(flipped))] + rec[4:],
        "reorder": rec[:2] + [rec[3], rec[2]] + rec[4:],
        "drop-middle": rec[:3] + rec[4:],
        "from-another-file": rec[:3] + [their[3]] + rec[4:],
        "envelope-of-another-file": [their[0]] + rec[1:],
        "header-as-chunk": rec[:2] + [rec[1]] + rec[3:],
    }[change]
    path.write_bytes(line + b"".join(body))
    with pytest.raises(FormatError, match="fails authentication") as err:
        read_native(path)
    assert str(err.value).startswith(f"{path}: record ") and "\n" not in str(err.value)


@pytest.mark.parametrize(("envelope", "words"), [
    (b"[1]", "corrupt encryption header"),
    (b'{"cipher": "ROT13", "file_id": "00", "data_key": ""}', "cipher 'ROT13', not AES-256-GCM"),
    (b'{"cipher": "AES-256-GCM", "file_id": "00", "data_key": "AAAA"}', "wrong length"),
    (b'{"cipher": "AES-256-GCM", "file_id": 7, "data_key": "AAAA"}', "corrupt encryption header"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_a_broken_envelope_is_a_format_error(tmp_path, env_key, envelope, words):
    path = tmp_path / "bad.gaitrec"
    record = struct.pack("<II", len(envelope), zlib.crc32(envelope)) + envelope
    path.write_bytes(MAGIC + b"1 sealed\n" + record)
    with pytest.raises(FormatError, match=words):
        read_recording(path)
    path.write_bytes(MAGIC + b"1 sealed\n" + record[:-1])
    with pytest.raises(FormatError, match="truncated or corrupt encryption header record"):
        read_recording(path)


def test_convert_keeps_a_recording_encrypted_and_says_when_it_cannot(tmp_path, env_key, caplog):
    src = tmp_path / "r.gaitrec"
    _write(src)
    convert(src, tmp_path / "copy.gaitrec")
    assert is_sealed(tmp_path / "copy.gaitrec")
    assert_same_tracks(read_recording(src), read_recording(tmp_path / "copy.gaitrec"))
    convert(src, tmp_path / "out.csv")
    assert "out.csv: written unencrypted" in caplog.text


def test_the_config_can_encrypt_every_new_recording(tmp_path, gallery):
    assert sealed.writing_key() is None  # off by default
    sealed.use_config(lambda: Config(gallery=gallery, encrypt_recordings=True))
    assert sealed.writing_key() is not None and key_file(gallery).exists()
    config = tmp_path / "gaitcam.toml"
    config.write_text('encrypt_recordings = "yes"\n')
    from gaitcam.config import load_config

    with pytest.raises(FormatError, match="encrypt_recordings: expected true or false, got 'yes'"):
        load_config(config)


def test_the_command_line_reads_with_the_configured_gallery_key(tmp_path, gallery, capsys):
    src = tmp_path / "r.gaitrec"
    _write(src)  # the fixture's gallery key file
    config = tmp_path / "gaitcam.toml"
    config.write_text(f'gallery = "{gallery}"\n')
    assert main(["--config", str(config), "convert", str(src), str(tmp_path / "out.csv")]) == 0
    assert main(["convert", str(src), str(tmp_path / "out2.csv")]) == 2  # the default gallery has no key
    assert "encrypted recording; set GAITCAM_GALLERY_KEY" in capsys.readouterr().err


CHILD = """
import sys, time
from pathlib import Path
import numpy as np
from gaitcam.config import Config
from gaitcam.recording import sealed
from gaitcam.recording.native import RecordingWriter
from gaitcam.recording.recording import RecordingMeta
from gaitcam.sensors.base import Body, Frame
from gaitcam.skeleton.layouts import CANONICAL
sealed.use_config(lambda: Config(gallery=Path(sys.argv[2])))
meta = RecordingMeta("demo", "kinect_v1", 100.0)
with RecordingWriter(sys.argv[1], meta, flush_seconds=0.5, key=sealed.writing_key(True)) as w:
    for i in range(100000):
        w.write(Frame(i / 100, [Body(0, np.full((20, 3), i, np.float32))], CANONICAL))
        print(i, flush=True)
        time.sleep(0.002)
"""


def test_sigkill_mid_encrypted_recording_keeps_all_but_the_last_flush_interval(tmp_path, gallery):
    path = tmp_path / "killed.gaitrec"
    last = kill_recorder_after(CHILD, [str(path), str(gallery)], 150)  # 1.5 s of recording time at 100 fps
    seq = read_native(path).tracks[0]
    kept = len(seq)
    assert kept >= last - 50
    np.testing.assert_array_equal(seq.timestamps, np.arange(kept) / 100)
    np.testing.assert_array_equal(seq.joints[:, 0, 0], np.arange(kept, dtype=np.float32))


def test_writer_errors_are_the_plain_writers(tmp_path, env_key):
    path = tmp_path / "r.gaitrec"
    with RecordingWriter(path, RecordingMeta("demo", "kinect_v1", 30.0), key=sealed.writing_key(True)) as w:
        w.write(_frame(0))
        with pytest.raises(FormatError, match="does not follow"):
            w.write(_frame(0))
    assert list(read_native(path).tracks) == [0]
    with pytest.raises(FormatError, match="already exists"):
        RecordingWriter(path, RecordingMeta("demo", "kinect_v1", 30.0), key=sealed.writing_key(True))


def test_record_encrypt_writes_an_encrypted_recording(tmp_path, gallery):
    out = tmp_path / "r.gaitrec"
    assert main(["--gallery", str(gallery), "record", "--headless", "--duration", "1", "--encrypt",
                 "--out", str(out)]) == 0
    assert is_sealed(out) and out.stat().st_mode & 0o777 == 0o600 and key_file(gallery).exists()
    assert read_recording(out).tracks  # the fixture configures the same gallery


# -- re-wrapping for a rekey ---------------------------------------------------------------

def _other_key() -> tuple[str, Key]:
    """A new random key: its base64 text (for the environment) and the key."""
    text = _key_text()
    return text, Key(base64.b64decode(text), None)


def _gallery_key(gallery: Path) -> Key:
    return find_key(gallery, None)


def test_rewrap_changes_the_envelope_only_in_place_and_once(tmp_path, gallery, monkeypatch):
    path = tmp_path / "r.gaitrec"
    _write(path)
    before, sha, full = path.read_bytes(), content_sha256(path), read_native(path)
    text, new = _other_key()
    inode = path.stat().st_ino
    assert rewrap_file(path, _gallery_key(gallery), new) == "rewrapped"
    after = path.read_bytes()
    (start, end), *_ = _records(before)
    assert len(after) == len(before) and after[end:] == before[end:] and after[start:end] != before[start:end]
    assert path.stat().st_ino == inode and content_sha256(path) == sha  # written over; still the same recording
    assert rewrap_file(path, _gallery_key(gallery), new) == "current" and path.read_bytes() == after
    with pytest.raises(FormatError, match="encrypted with another key"):
        read_native(path)  # the gallery's key file no longer opens it
    monkeypatch.setenv(KEY_ENV, text)
    assert_same_tracks(read_native(path), full)


def test_an_envelope_of_another_length_is_rewritten_whole(tmp_path, gallery, monkeypatch):
    path = tmp_path / "r.gaitrec"
    _write(path)
    data = path.read_bytes()
    (start, end), *_ = _records(data)
    compact = json.dumps(json.loads(data[start + 8:end]), separators=(",", ":")).encode()  # not as gaitcam writes
    path.write_bytes(data[:start] + _recrc(data[start:start + 8] + compact) + data[end:])
    full = read_native(path)
    text, new = _other_key()
    assert rewrap_file(path, _gallery_key(gallery), new) == "rewrapped"
    assert len(path.read_bytes()) == len(data) and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery", "r.gaitrec"]  # no temporary file left
    monkeypatch.setenv(KEY_ENV, text)
    assert_same_tracks(read_native(path), full)


def test_rewrap_says_what_it_did_not_rewrap(tmp_path, gallery):
    old, (_, new) = _gallery_key(gallery), _other_key()
    write_native(synthetic_recording(), tmp_path / "plain.gaitrec")
    (tmp_path / "walk.csv").write_text("not a gaitrec\n")
    assert rewrap_file(tmp_path / "gone.gaitrec", old, new) == "missing"
    assert rewrap_file(tmp_path / "plain.gaitrec", old, new) == "plain"
    assert rewrap_file(tmp_path / "walk.csv", old, new) == "plain"
    path = tmp_path / "r.gaitrec"
    _write(path)
    before = path.read_bytes()
    assert rewrap_file(path, _other_key()[1], new) == "unopenable"  # another gallery's: neither key opens it
    path.write_bytes(before[:30])  # the envelope cut off
    assert rewrap_file(path, old, new) == "unopenable"
    (tmp_path / "folder.gaitrec").mkdir()  # what cannot be read may still need the old key: an error
    with pytest.raises(FormatError, match="folder.gaitrec: not a regular file"):
        rewrap_file(tmp_path / "folder.gaitrec", old, new)


def test_readers_try_the_key_file_then_new_then_old(tmp_path, gallery):
    key = key_file(gallery)
    path = tmp_path / "r.gaitrec"
    _write(path)  # wrapped by the key file's key
    for name in (".old", ".new"):  # a rekey under way: the recording's key is one of them
        key.rename(key.with_name(key.name + name))
        key.write_text(_key_text())
        assert read_native(path).tracks
        key.with_name(key.name + name).rename(key)
    key.rename(key.with_name(key.name + ".old"))
    key.write_text(_key_text())
    key.with_name(key.name + ".new").write_text(_key_text())
    assert read_native(path).tracks
    key.with_name(key.name + ".old").unlink()
    with pytest.raises(FormatError, match=rf"not the one from {key} or {key}.new\)$"):
        read_native(path)
