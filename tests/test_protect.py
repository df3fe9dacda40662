"""Templates encrypted at rest: where the key comes from, a wrong or missing key as one clear
line, and `gallery rekey` (the old key no longer opens the gallery, no old ciphertext remains)."""
import base64
import logging
import os
import sqlite3
import stat

import numpy as np
import pytest

from gaitcam.cli import main
from gaitcam.errors import GaitcamError
from gaitcam.identity import protect
from gaitcam.identity.gallery import Gallery, Template

KEY_ENV = protect.KEY_ENV


def vecs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((16, 32)).astype(np.float32)


def enrolled(path, *names: str) -> None:
    with Gallery(path) as g:
        for i, name in enumerate(names):
            g.enroll(name, [Template("age", "v1", "kinect", vecs(i))])


def blobs(path) -> list[bytes]:
    conn = sqlite3.connect(path)
    try:
        return [b for (b,) in conn.execute("SELECT vectors FROM templates ORDER BY id")]
    finally:
        conn.close()


def in_files(blob: bytes, path) -> bool:
    return any(blob in p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_the_key_file_is_created_owner_only_beside_the_gallery(tmp_path):
    path = tmp_path / "new" / "g.db"
    enrolled(path, "Al")
    key = path.with_name("g.db.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(base64.urlsafe_b64decode(key.read_bytes().strip())) == 32
    assert not list(tmp_path.glob("new/*.tmp"))


def test_a_key_file_readable_by_others_is_made_owner_only(tmp_path, caplog):
    path = tmp_path / "g.db"
    enrolled(path, "Al")
    key = path.with_name("g.db.key")
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING), Gallery(path) as g:
        assert g.templates("age")[0] == ["Al"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "made owner-only" in caplog.text


def test_a_wrong_key_fails_at_open_and_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "g.db"
    enrolled(path, "Al")
    key, before = path.with_name("g.db.key"), path.read_bytes()
    right = key.read_bytes()
    key.write_bytes(base64.b64encode(os.urandom(32)))
    with pytest.raises(GaitcamError, match=r"g.db: wrong key for this gallery \(.*g.db.key\)$"):
        Gallery(path)
    wrong = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv(KEY_ENV, wrong)
    with pytest.raises(GaitcamError, match=rf"wrong key for this gallery \({KEY_ENV}\)") as e:
        Gallery(path)
    assert wrong not in str(e.value)
    monkeypatch.delenv(KEY_ENV)
    assert path.read_bytes() == before
    key.write_bytes(right)
    with Gallery(path) as g:
        np.testing.assert_array_equal(g.templates("age")[1][0], vecs(0))


def test_a_missing_key_file_is_an_error_not_a_new_key(tmp_path):
    path = tmp_path / "g.db"
    enrolled(path, "Al")
    path.with_name("g.db.key").unlink()
    with pytest.raises(GaitcamError, match=r"g.db: its key file .*g.db.key is missing"):
        Gallery(path)
    assert not path.with_name("g.db.key").exists()


def test_the_key_can_come_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "g.db"
    secret = os.urandom(32)
    unpadded = base64.urlsafe_b64encode(secret).rstrip(b"=")
    for i, encoded in enumerate((base64.b64encode(secret), base64.urlsafe_b64encode(secret), unpadded)):
        monkeypatch.setenv(KEY_ENV, encoded.decode())
        enrolled(path, f"P{i}")
    assert not path.with_name("g.db.key").exists()  # no key file when the environment holds it
    with Gallery(path) as g:
        assert len(g.templates("age")[0]) == 3
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(GaitcamError, match="is missing"):
        Gallery(path)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_a_malformed_environment_key_is_one_clear_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(GaitcamError, match=f"^{KEY_ENV}: not a gallery key") as e:
        Gallery(tmp_path / "g.db")
    assert "\n" not in str(e.value) and (not value or value not in str(e.value))


def test_keys_never_show(tmp_path):
    key = protect.find_key(tmp_path / "g.db", None)
    secret = (tmp_path / "g.db.key").read_text().strip()
    assert secret not in repr(key) and "g.db.key" in repr(key)


def test_rekey_re_encrypts_everything_and_retires_the_old_key(tmp_path):
    path = tmp_path / "g.db"
    enrolled(path, "Al", "Bo")
    key = path.with_name("g.db.key")
    old_key, old_blobs = key.read_bytes(), blobs(path)
    with Gallery(path) as g, Gallery(path) as other:  # `other` was opened before the rekey
        done = g.rekey()
        assert (done.templates, done.key) == (2, key)
        names, arrays = other.templates("age")
        assert names == ["Al", "Bo"]
        for i, a in enumerate(arrays):
            np.testing.assert_array_equal(a, vecs(i))
        other.enroll("Cy", [Template("age", "v1", "kinect", vecs(2))])  # sealed with the new key
        assert len(g.templates("age")[0]) == 3
    assert key.read_bytes() != old_key and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not path.with_name("g.db.key.new").exists()
    assert not any(in_files(b, path) for b in old_blobs)
    new_key = key.read_bytes()
    key.write_bytes(old_key)
    with pytest.raises(GaitcamError, match="wrong key"):
        Gallery(path)
    key.write_bytes(new_key)


def test_rekey_refuses_a_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, base64.b64encode(os.urandom(32)).decode())
    enrolled(tmp_path / "g.db", "Al")
    with Gallery(tmp_path / "g.db") as g, pytest.raises(GaitcamError, match=f"comes from {KEY_ENV}: unset it"):
        g.rekey()


def test_gallery_rekey_command(tmp_path, capsys, monkeypatch, caplog):
    db = tmp_path / "g.db"
    enrolled(db, "Al")
    old = db.with_name("g.db.key").read_text().strip()
    with caplog.at_level(logging.DEBUG):
        assert main(["gallery", "--gallery", str(db), "rekey"]) == 0
    out, err = capsys.readouterr()
    assert out == (f"re-encrypted 1 template(s) in {db} with a new key ({db}.key); "
                   "re-wrapped 0 encrypted recording(s) (0 missing)\n")
    new = db.with_name("g.db.key").read_text().strip()
    assert not any(k in text for k in (old, new) for text in (out, err, caplog.text))
    monkeypatch.setenv(KEY_ENV, db.with_name("g.db.key").read_text())
    assert main(["gallery", "--gallery", str(db), "rekey"]) == 2
    assert f"comes from {KEY_ENV}" in capsys.readouterr().err


def key_check(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()[0]
    finally:
        conn.close()


def test_an_open_during_another_process_rekey_finds_the_old_key(tmp_path):
    path = tmp_path / "g.db"
    enrolled(path, "Al")
    check, key = key_check(path), path.with_name("g.db.key")
    # Another process committed its rekey and renamed `.new` over the key file; `.old` still there.
    key.rename(path.with_name("g.db.key.old"))
    key.write_text(base64.b64encode(os.urandom(32)).decode())
    found = protect.find_key(path, check)  # the check this open read before that commit
    assert found.file == path.with_name("g.db.key.old") and found.passes(check)


def test_only_the_old_copy_opening_the_gallery_is_a_clear_error_and_keeps_it(tmp_path):
    path = tmp_path / "g.db"
    enrolled(path, "Al")
    old = path.with_name("g.db.key.old")
    path.with_name("g.db.key").rename(old)  # the key file lost, with a rekey's copy of it left
    with pytest.raises(GaitcamError, match=r"g.db.key: missing or not this gallery's key; only the last rekey's "
                                           r"copy of the old key \(.*g.db.key.old\) opens the gallery"):
        Gallery(path)
    assert old.exists()


def test_creating_a_key_file_leaves_no_temporary_file_and_takes_a_rival_one(tmp_path, monkeypatch):
    path = tmp_path / "g.db.key"
    path.symlink_to(tmp_path / "nowhere")  # blocks the link, yet is no key
    with pytest.raises(GaitcamError, match=r"g.db.key: cannot create gallery key \(something that is not a key"):
        protect.find_key(tmp_path / "g.db", None)
    assert [p.name for p in tmp_path.iterdir()] == ["g.db.key"]  # no temporary file left behind
    path.unlink()
    rival, real = protect.Key(os.urandom(32), path), os.link

    def rival_first(src, dst):  # another process links its key just before this one
        protect._write_private(path, rival._secret)
        real(src, dst)

    monkeypatch.setattr(protect.os, "link", rival_first)
    assert protect.find_key(tmp_path / "g.db", None).same(rival)
    assert [p.name for p in tmp_path.iterdir()] == ["g.db.key"]


def test_a_blob_too_short_to_be_sealed_does_not_open(tmp_path):
    key = protect.Key(os.urandom(32), None)
    for blob in (b"", b"x" * (protect.OVERHEAD - 1)):
        assert key.unseal(blob, b"") is None
    assert not key.passes("") and not key.passes(base64.b64encode(b"short").decode())
    path = tmp_path / "g.db"
    enrolled(path, "Al")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'key_check'", (base64.b64encode(b"cut").decode(),))
    conn.close()
    with pytest.raises(GaitcamError, match="wrong key for this gallery"):
        Gallery(path)
