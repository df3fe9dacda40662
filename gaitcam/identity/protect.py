"""The gallery's templates sealed with AES-GCM, and the key that seals them.

Templates are biometric data: a copied gallery file, a backup or a lost disk must not give
anyone's gait away. Each template is stored as a 12-byte random nonce followed by its
AES-256-GCM ciphertext and tag; the associated data binds it to whose it is (the person's row id)
and what its row says it is (kind, encoder version, sensor, shape), so a blob moved to another
row (another person's included), or altered, does not decrypt. Names are left out of it, so a
rename never re-encrypts anything.

The key is 32 random bytes: from $GAITCAM_GALLERY_KEY (base64) when set, else from the file
beside the gallery (`gallery.db.key`, base64, owner-only), created on first use. The gallery
keeps a key check (a sealed constant) so a wrong key fails when the gallery opens, not at the
first template. A rekey writes the new key to `gallery.db.key.new` and a copy of the old one to
`gallery.db.key.old` before it commits, renames the new one over the key file after, and deletes
the old copy once the encrypted recordings are re-wrapped; `settle` finishes that rename after a
crash, and the gallery finishes the re-wrapping while `.old` is there. When recordings the gallery
refers to were missing (an unmounted disk), the old key is not deleted but retired
(`gallery.db.key.retired-<UTC time>`), and readers still try it. A key is never printed, logged
or passed on a command line.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gaitcam.errors import GaitcamError

log = logging.getLogger(__name__)

KEY_ENV = "GAITCAM_GALLERY_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
OVERHEAD = NONCE_BYTES + 16  # nonce and GCM tag: a sealed blob's length beyond its plaintext
_CHECK = (b"gaitcam gallery key check", b"key check")  # plaintext, associated data


class Key:
    """A gallery key: seals and opens templates. Its repr says where it came from, never the key."""

    def __init__(self, secret: bytes, file: Path | None) -> None:
        self._aead = AESGCM(secret)
        self._secret = secret  # kept only for `save_old_key` and `same`
        self.file = file  # None: from $GAITCAM_GALLERY_KEY

    def __repr__(self) -> str:
        return f"Key(from {self.where})"

    @property
    def where(self) -> str:
        return KEY_ENV if self.file is None else str(self.file)

    def same(self, other: Key) -> bool:
        """Whether `other` holds this very key, wherever each came from."""
        return hmac.compare_digest(self._secret, other._secret)

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, aad)

    def unseal(self, blob: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or None when `blob` was not sealed by this key with this `aad` (a blob too
        short to hold a nonce and tag included: AESGCM would raise on it, and a corrupt key check
        must read as a wrong key, not a traceback)."""
        if len(blob) < OVERHEAD:
            return None
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            return None

    def check(self) -> str:
        """A fresh key check for the gallery's meta table (base64 text)."""
        return base64.b64encode(self.seal(*_CHECK)).decode()

    def passes(self, check: str) -> bool:
        try:
            blob = base64.b64decode(check, validate=True)
        except (binascii.Error, ValueError):
            return False
        return self.unseal(blob, _CHECK[1]) == _CHECK[0]


def template_aad(person_id: int, kind: str, encoder_version: str, sensor: str, dim: int, count: int) -> bytes:
    """What a template blob is bound to: its owner's row id (which a rename keeps, unlike the
    name) and its row's meaning, so another person's blob pasted into a row does not decrypt."""
    return json.dumps(["gaitcam template", person_id, kind, encoder_version, sensor, dim, count]).encode()


def key_file(gallery: Path) -> Path:
    return gallery.with_name(gallery.name + ".key")


def new_key_file(key: Path) -> Path:
    """Where a rekey puts the new key until its transaction commits."""
    return key.with_name(key.name + ".new")


def old_key_file(key: Path) -> Path:
    """Where a rekey keeps the old key until every encrypted recording is re-wrapped."""
    return key.with_name(key.name + ".old")


def retired_key_files(key: Path) -> list[Path]:
    """Old keys kept for recordings that were missing when a rekey re-wrapped (newest first)."""
    return sorted(key.parent.glob(key.name + ".retired-*"), reverse=True)


def _decode(text: str, where: str) -> bytes:
    """A base64 key (standard or URL-safe, padding optional); the error never quotes it."""
    text = text.strip().replace("-", "+").replace("_", "/")
    try:
        secret = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise GaitcamError(f"{where}: not a gallery key (expected {KEY_BYTES} bytes in base64)") from None
    if len(secret) != KEY_BYTES:
        raise GaitcamError(f"{where}: not a gallery key ({len(secret)} bytes; expected {KEY_BYTES}, base64)")
    return secret


def _env_key() -> Key | None:
    text = os.environ.get(KEY_ENV)
    return None if text is None else Key(_decode(text, KEY_ENV), None)


def _read_key(path: Path) -> Key | None:
    """The key in `path`, None when there is none; made owner-only if others could read it."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s: was readable by others (mode %o); made owner-only (600)", path, mode)
            path.chmod(0o600)
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise GaitcamError(f"{path}: cannot read gallery key ({e.strerror})") from None
    return Key(_decode(data.decode("ascii", errors="replace"), str(path)), path)


def private_folder(folder: Path, holds: str) -> None:
    """Make `folder` owner-only (0700) if others could read it, with a warning; where that is not
    ours to change (another user's folder; a shared one, like /tmp, even for root), warn instead.
    `holds` says what is inside."""
    try:
        st = folder.stat()
        if not st.st_mode & 0o077:
            return
        if st.st_uid != os.geteuid() or st.st_mode & stat.S_ISVTX:  # a sticky folder is meant to be shared
            log.warning("%s: others can read this folder, which holds %s; it is not this user's own folder to "
                        "make private: use a folder of your own", folder, holds)
            return
        folder.chmod(0o700)
        log.warning("%s: made owner-only (0700): it holds %s", folder, holds)
    except OSError as e:
        log.warning("%s: others can read this folder, which holds %s, and it cannot be made owner-only (%s)",
                    folder, holds, e.strerror or e)


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(path: Path, secret: bytes) -> None:
    """Write a new owner-only key file (never an existing one), on disk before returning."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, base64.urlsafe_b64encode(secret) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_key(path: Path) -> Key:
    """A new random key in `path`; if another process created one meanwhile, that one.

    Written under a temporary name of its own and linked into place, so a reader never sees a
    half-written key and two processes opening a new gallery at once agree on one key.
    """
    secret = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
    tmp = path.with_name(f"{path.name}.{os.urandom(8).hex()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _write_private(tmp, secret)
            os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_folder(path.parent)
    except FileExistsError:
        pass  # another process linked its key first: that one, below
    except OSError as e:
        raise GaitcamError(f"{path}: cannot create gallery key ({e.strerror})") from None
    else:
        return Key(secret, path)
    theirs = _read_key(path)
    if theirs is None:  # not retried: what blocks the link without being a key would block it again
        raise GaitcamError(f"{path}: cannot create gallery key (something that is not a key file is in its "
                           "place, a broken link say)")
    return theirs


def reading_keys(gallery: Path) -> list[Key]:
    """Every key a recording sealed for `gallery` may be wrapped by: the environment's alone,
    else the key file's and, during a rekey, its `.new` and `.old`, then the retired keys (those
    present, in that order)."""
    key = _env_key()
    if key is not None:
        return [key]
    path = key_file(gallery)
    files = [path, new_key_file(path), old_key_file(path), *retired_key_files(path)]
    return [k for k in map(_read_key, files) if k is not None]


def find_key(gallery: Path, check: str | None) -> Key:
    """The key that passes the gallery's `check`, or a clear error.

    `check` None is a gallery not keyed yet (new, or written before encryption): it takes the
    environment's key, or the key file's, and a key file is created only then. The key file,
    then `.new` and `.old` are tried: a gallery opened before another process's rekey committed
    holds the old check while that process renames `.new` over the key file.
    """
    key = _env_key()
    if key is None:
        path = key_file(gallery)
        found = [k for k in map(_read_key, (path, new_key_file(path), old_key_file(path))) if k is not None]
        if check is None:
            return found[0] if found else _create_key(path)
        if not found:
            raise GaitcamError(f"{gallery}: its key file {path} is missing; restore it from a backup "
                               f"(or set {KEY_ENV}), without it the templates cannot be read")
        key = next((k for k in found if k.passes(check)), found[0])
    if check is not None and not key.passes(check):
        raise GaitcamError(f"{gallery}: wrong key for this gallery ({key.where})")
    return key


def settle(key: Key, quiet: bool = False) -> Key:
    """Finish a rekey's key files: the committed new key replaces the key file (said in the log
    unless `quiet`, as by the rekey itself: here it may be another process's, crashed or not), or
    a new key that never committed is deleted. Call under the gallery's write lock with the key
    that passes its check; returns it, from the key file."""
    if key.file is None:
        return key
    if key.file.name.endswith(".old"):  # never settled on: `.old` is deleted once re-wrapping is done
        path = key.file.with_name(key.file.name.removesuffix(".old"))
        raise GaitcamError(f"{path}: missing or not this gallery's key; only the last rekey's copy of the old key "
                           f"({key.file}) opens the gallery: restore the key file from a backup")
    try:
        if key.file.name.endswith(".new"):
            path = key.file.with_name(key.file.name.removesuffix(".new"))
            os.replace(key.file, path)
            fsync_folder(path.parent)
            if not quiet:
                log.warning("%s: finished a rekey's key files (its committed new key put in place)", path)
            key.file = path
            return key
        stale = new_key_file(key.file)
        if stale.exists():
            stale.unlink()
            log.warning("%s: deleted the new key of a rekey that never committed", stale)
    except OSError as e:
        raise GaitcamError(f"{key.file}: cannot finish the gallery's rekey ({e.strerror})") from None
    return key


def write_new_key(key: Key) -> Key:
    """A new random key, written to the key file's `.new` beside it (owner-only, fsynced)."""
    assert key.file is not None
    path = new_key_file(key.file)
    secret = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
    try:
        path.unlink(missing_ok=True)
        _write_private(path, secret)
        fsync_folder(path.parent)
    except OSError as e:
        raise GaitcamError(f"{path}: cannot write the new gallery key ({e.strerror})") from None
    return Key(secret, path)


def save_old_key(key: Key) -> Path:
    """Copy `key` (the one a rekey retires) to its key file's `.old` (owner-only, fsynced).

    An existing `.old` is a pending rekey's only copy of the key its recordings are wrapped by:
    never overwritten, that is an error.
    """
    assert key.file is not None
    path = old_key_file(key.file)
    try:
        _write_private(path, key._secret)
        fsync_folder(path.parent)
    except FileExistsError:
        raise GaitcamError(f"{path}: an unfinished rekey's old key is still there; open the gallery again "
                           "to finish that rekey first") from None
    except OSError as e:
        raise GaitcamError(f"{path}: cannot save the old gallery key ({e.strerror})") from None
    return path


def read_old_key(gallery: Path) -> Key | None:
    """The old key an unfinished rekey left (`<key>.old`), None when none is left."""
    return _read_key(old_key_file(key_file(gallery)))


def retire_old_key(gallery: Path) -> Path | None:
    """Rename the rekey's old key to `<key>.retired-<UTC time>` (owner-only, as `.old` was
    written), for recordings it still wraps that were missing; readers keep trying it, and a
    later rekey is not held up by it. Returns where it is now; None when there is no `.old`
    (another process finished that rekey's re-wrapping first)."""
    path = old_key_file(key_file(gallery))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")  # microseconds: two rekeys never share one
    retired = path.with_name(f"{path.name.removesuffix('.old')}.retired-{stamp}")
    try:
        os.link(path, retired)  # never over another retired key
        path.unlink()
        fsync_folder(path.parent)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise GaitcamError(f"{path}: cannot retire the old gallery key ({e.strerror})") from None
    return retired


def drop_old_key(gallery: Path) -> None:
    """Delete the rekey's old key (if there) for good: the recordings no longer need it."""
    path = old_key_file(key_file(gallery))
    try:
        path.unlink(missing_ok=True)
        fsync_folder(path.parent)
    except OSError as e:
        raise GaitcamError(f"{path}: cannot delete the old gallery key ({e.strerror})") from None
