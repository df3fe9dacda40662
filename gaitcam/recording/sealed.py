"""Recordings sealed with AES-GCM at rest (`record --encrypt`), under the gallery's key.

A recording of people walking is biometric data, like the templates enrolled from it. An
encrypted `.gaitrec` gets its own random 32-byte data key, stored in the file wrapped (sealed)
by the gallery key (`protect`: $GAITCAM_GALLERY_KEY, else the key file beside the configured
gallery): a wrong key then fails at the first record with one line, and a rekey need only re-wrap
60 bytes per file (`rewrap`), not re-encrypt it. While a rekey is under way a file may be wrapped
by the old key or the new one, so a reader tries each key the gallery may hold (the AEAD tag
tells which one opens it). Every record after the envelope is sealed with the
data key, a fresh nonce, and the file id and its sequence number as associated data, so records
cannot be reordered, dropped from the middle or moved between files undetected. A cut-off tail
is the recorder's crash, not tampering: the native reader keeps the prefix, as for plain files.

Which gallery's key file: the one the command line configured (`use_config`, called by the
CLI), else the config file's (or the default) gallery; a writer takes the key that passes that
gallery's key check, so a missing key file is an error there, as it is for the gallery.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gaitcam.errors import FormatError, GaitcamError
from gaitcam.identity import protect
from gaitcam.identity.protect import KEY_BYTES, KEY_ENV, NONCE_BYTES, OVERHEAD, Key, find_key, key_file

if TYPE_CHECKING:
    from gaitcam.config import Config

CIPHER = "AES-256-GCM"
FILE_ID_BYTES = 16
_WRAP_AAD = b"gaitcam recording data key "  # + file id: a wrapped key opens in its own file only
_CHUNK_AAD = b"gaitcam recording record "  # + file id + uint64 sequence number (0: the header)
_SEQ = struct.Struct("<Q")


def _load_default() -> Config:
    from gaitcam.config import load_config

    return load_config()


_configured: Callable[[], Config] = _load_default


def use_config(load: Callable[[], Config] | None) -> Callable[[], Config]:
    """Where the gallery (and `encrypt_recordings`) comes from: a command's config, loaded only
    when a recording needs the key (None: the config file's, as `load_config()` finds it).
    Returns the one used before, to put back."""
    global _configured
    before, _configured = _configured, load or _load_default
    return before


def current_config() -> Config:
    """The config `use_config` set (for a worker process, which must be told it)."""
    return _configured()


def writing_key(encrypt: bool = False) -> Key | None:
    """The key new recordings are sealed with, when `encrypt` or the config's
    `encrypt_recordings` asks for it, else None (plain files): $GAITCAM_GALLERY_KEY, else the key
    that passes the configured gallery's key check. A key file is created only while there is no
    keyed gallery yet: one whose key file is missing is the gallery's error, never a new key that
    neither it nor a restored key file could open these recordings with."""
    if not (encrypt or _configured().encrypt_recordings):
        return None
    if KEY_ENV in os.environ:
        return find_key(Path(), None)
    gallery = _configured().gallery
    return find_key(gallery, _key_check(gallery))


def _key_check(gallery: Path) -> str | None:
    """The key check in `gallery`'s meta table, read-only (no write lock, no file created);
    None when there is no gallery yet, or it holds no key check (schema 1, or still empty)."""
    if not gallery.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{gallery.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        if "no such table" in str(e):  # created, but not written yet
            return None
        raise GaitcamError(f"{gallery}: cannot read the gallery's key check ({e})") from None
    return None if row is None else row[0]


def reading_keys(path: Path) -> list[Key]:
    """The gallery keys that may open the encrypted recording `path` (see `protect.reading_keys`);
    never creates a key file."""
    try:
        gallery = Path() if KEY_ENV in os.environ else _configured().gallery
        keys = protect.reading_keys(gallery)
    except GaitcamError as e:  # a malformed key, an unreadable key file or config: one line naming this file
        raise FormatError(path, str(e)) from None
    if not keys:
        raise FormatError(path, f"encrypted recording; set {KEY_ENV} or keep the gallery's key file at "
                          f"{key_file(gallery)}")
    return keys


class Sealer:
    """Seals a new file's records in order; `envelope` is its plaintext header record."""

    def __init__(self, key: Key) -> None:
        self.file_id = os.urandom(FILE_ID_BYTES)
        secret = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
        self.envelope = _envelope(self.file_id, key.seal(secret, _WRAP_AAD + self.file_id))
        self._aead = AESGCM(secret)
        self._seq = 0

    def seal(self, payload: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = _CHUNK_AAD + self.file_id + _SEQ.pack(self._seq)
        self._seq += 1
        return nonce + self._aead.encrypt(nonce, payload, aad)


class Opener:
    """Opens an encrypted file's records, in order, given its envelope (the plaintext header)."""

    def __init__(self, path: Path, envelope: bytes) -> None:
        self.path = path
        self.file_id, wrapped = _parse_envelope(path, envelope)
        keys = reading_keys(path)
        secret = _unwrap(keys, self.file_id, wrapped)
        if secret is None or len(secret) != KEY_BYTES:
            tried = " or ".join(k.where for k in keys)
            raise FormatError(path, f"encrypted with another key (not the one from {tried})")
        self._aead = AESGCM(secret)

    def open(self, blob: bytes, seq: int, offset: int) -> bytes:
        """Record `seq`'s plaintext; FormatError when it is not that record of this file.

        Its CRC matched, so this is no torn write: it was altered, moved or reordered.
        """
        if len(blob) >= OVERHEAD:
            try:
                return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                          _CHUNK_AAD + self.file_id + _SEQ.pack(seq))
            except InvalidTag:
                pass
        raise FormatError(self.path, f"record {seq} at byte {offset} fails authentication "
                          "(altered, reordered, or taken from another file)")


def _unwrap(keys: list[Key], file_id: bytes, wrapped: bytes) -> bytes | None:
    """The data key, from the first of `keys` that opens it (its AEAD tag tells); None if none does."""
    for key in keys:
        secret = key.unseal(wrapped, _WRAP_AAD + file_id)
        if secret is not None:
            return secret
    return None


def rewrap(path: Path, envelope: bytes, old: Key, new: Key) -> bytes | None:
    """The envelope record `envelope` of `path` with its data key wrapped by `new` instead of
    `old`; None when `new` already opens it (a rekey run again after a crash changes nothing).

    Same file id, same JSON shape, same base64 length: the new envelope is as long as the old
    one of any file gaitcam wrote, so it can be written over it in place.
    """
    file_id, wrapped = _parse_envelope(path, envelope)
    if _unwrap([new], file_id, wrapped) is not None:
        return None
    secret = _unwrap([old], file_id, wrapped)
    if secret is None:
        raise FormatError(path, f"encrypted with another key (neither the old one nor the new one of {new.where})")
    return _envelope(file_id, new.seal(secret, _WRAP_AAD + file_id))


def _envelope(file_id: bytes, wrapped: bytes) -> bytes:
    """The envelope record's payload, always serialised alike (so a re-wrap keeps its length)."""
    return json.dumps({"cipher": CIPHER, "file_id": file_id.hex(),
                       "data_key": base64.b64encode(wrapped).decode()}).encode()


def _parse_envelope(path: Path, envelope: bytes) -> tuple[bytes, bytes]:
    """(file id, wrapped data key) from the envelope record, or a FormatError."""
    try:
        e = json.loads(envelope)
        if e["cipher"] != CIPHER:
            raise ValueError(f"cipher {str(e['cipher'])[:40]!r}, not {CIPHER}")
        file_id = bytes.fromhex(e["file_id"])
        wrapped = base64.b64decode(e["data_key"], validate=True)
        if len(file_id) != FILE_ID_BYTES or len(wrapped) != KEY_BYTES + OVERHEAD:
            raise ValueError("file id or data key of the wrong length")
    except (ValueError, TypeError, KeyError, binascii.Error) as e:
        raise FormatError(path, f"corrupt encryption header ({type(e).__name__}: {e})") from None
    except RecursionError:
        raise FormatError(path, "corrupt encryption header (JSON nested too deeply)") from None
    return file_id, wrapped
