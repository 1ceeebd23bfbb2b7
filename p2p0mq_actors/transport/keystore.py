"""CURVE key files on disk, in p2p0mq's layout.

Rules:
- Layout: ``<path>/<public_dir>/<uuid>.key`` holds a peer's public key (ours
  too: a ZAP handler pointed at the folder then admits every listed key) and
  ``<path>/<private_dir>/<uuid>.key_secret`` holds our own key pair. Both are
  zmq certificates as ``zmq.auth.create_certificates`` writes them, read back
  as ``zmq.auth.load_certificate`` reads them.
- A uuid names a file only if it cannot escape its folder or hide in it:
  non-empty UTF-8, no ``/``, ``\\`` or NUL, no leading ``.``, short enough for
  a file name. Anything else is a ``ConfigurationError`` before any I/O.
- Files are written whole and read from regular files only (``keyfiles``);
  a temporary file's name starts with ``.``, which no uuid's may, so
  listings skip them. A secret file has mode 0600 from its creation, in a
  0700 folder. A secret key never appears in a log line, a repr or an error.
- A pair is written under ``<path>/.keystore.lock`` (``flock``), one process
  at a time; its old public file is removed first and the new one written
  last, so a reader finds the public file of the secret one or none, never
  another pair's. ``ensure`` writes a missing public file again from the
  secret one (a zmq secret certificate holds both keys).
- Failing to load a key is a ``ConfigurationError`` naming the file, what is
  wrong and what to do; there is no fallback to plaintext.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import ConfigurationError
from ..core.ports import KeyPair
from .keyfiles import (
    PUBLIC_MODE,
    SECRET_MODE,
    certificate,
    exists,
    parse_certificate,
    read_key_file,
    reason,
    remove_file,
    write_file,
)
from .keys import check_key_pair, check_public_key, generate_keypair

__all__ = ["MAX_UUID_LEN", "KeyStore"]

log = logging.getLogger("p2p0mq_actors.transport")

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems
MAX_UUID_LEN = _NAME_MAX - len(SECRET_SUFFIX)
"""The longest uuid (in bytes) that still fits in a secret key file's name."""

_PRIVATE_DIR_MODE = 0o700
_NOT_OWNER_ONLY = 0o077
LOCK_TIMEOUT = 10.0
"""Seconds a writer waits for the store's lock before it says why it cannot."""
_LOCK_NAME = ".keystore.lock"  # beside the key folders, so their listings are keys only


class KeyStore:
    """CURVE key pairs and peers' public keys in p2p0mq's folders.

    Usage::

        store = KeyStore(Path.home() / ".p2p0mq")
        keys = store.ensure(b"1~1~1~1")          # our pair, made on first use
        store.add_public_key(b"2~2~2~2", their_public_key)
        server_key = store.public_key(b"2~2~2~2")

    The files interoperate with p2p0mq: a pair made by
    ``zmq.auth.create_certificates(dir, uuid)`` loads once its ``.key`` file
    is in the public folder and its ``.key_secret`` in the private one.

    Args:
        path: The base folder.
        public_dir: The public folder's name inside ``path``.
        private_dir: The private folder's name inside ``path``.
        create: Create missing folders (the private one with mode 0700).
            With False, missing folders are a ``ConfigurationError``.

    Raises:
        ConfigurationError: ``path`` is not a str or ``os.PathLike``, a folder
            name is not a plain name, or the folders cannot be created
            (``create=True``) or do not exist (``create=False``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        public_dir: str = "public_keys",
        private_dir: str = "private_keys",
        create: bool = True,
    ) -> None:
        try:
            self._path = Path(path)
        except TypeError:  # bytes, None...: Path's own message says nothing of key stores
            raise ConfigurationError(
                f"a key store path must be a str or os.PathLike, got {type(path).__name__}; "
                "pass a folder such as Path.home() / '.p2p0mq'"
            ) from None
        _check_folder_name(public_dir, "public_dir")
        _check_folder_name(private_dir, "private_dir")
        if public_dir == private_dir:
            raise ConfigurationError(
                f"public_dir and private_dir are both {public_dir!r}: secret keys must not "
                "sit with public ones; give the folders different names"
            )
        self._public_path = self._path / public_dir
        self._private_path = self._path / private_dir
        if create:
            self._make_folders()
        else:
            self._require_folders()

    @property
    def path(self) -> Path:
        """The base folder."""
        return self._path

    @property
    def public_path(self) -> Path:
        """The folder of ``<uuid>.key`` public certificates."""
        return self._public_path

    @property
    def private_path(self) -> Path:
        """The folder of ``<uuid>.key_secret`` secret certificates (mode 0700)."""
        return self._private_path

    def create(self, uuid: bytes, *, overwrite: bool = False) -> KeyPair:
        """Make a new key pair for ``uuid``, write both files and return it.

        The secret file is created with mode 0600 in the private folder
        (made 0700 if it was looser); the public file goes to the public folder,
        replacing any public file already there for ``uuid``. Processes that
        create the same pair at once take turns: the two files always hold
        the same pair.

        Raises:
            ConfigurationError: ``uuid`` cannot name a file, a secret file for
                it exists and ``overwrite`` is False, or a file cannot be written.
        """
        stem = _file_stem(uuid)
        secret_file = self._private_path / (stem + SECRET_SUFFIX)
        self._secure_private_folder()
        keys = generate_keypair()
        with self._locked():
            if not overwrite and exists(secret_file):
                raise _pair_exists(uuid, secret_file)
            self._write_pair(uuid, stem, keys, overwrite=overwrite)
        log.info("created a key pair for %r in %s", uuid, secret_file)
        return keys

    def ensure(self, uuid: bytes) -> KeyPair:
        """Our key pair for ``uuid``: loaded if its secret file exists, else created.

        A missing public file of an existing pair (a ``create`` that failed
        between its two files) is written again from the secret file.
        """
        stem = _file_stem(uuid)
        if not exists(self._private_path / (stem + SECRET_SUFFIX)):
            try:
                return self.create(uuid)
            except _KeyPairExistsError:  # created concurrently: use that one
                pass
        if exists(self._public_path / (stem + PUBLIC_SUFFIX)):
            return self.load(uuid)
        return self._restore_public(uuid, stem)

    def load(self, uuid: bytes) -> KeyPair:
        """Our key pair for ``uuid``, from ``<private>/<uuid>.key_secret``.

        Logs a warning when the file is accessible by group or others.

        Raises:
            ConfigurationError: the file is missing, unreadable or malformed,
                or its public key is not the one derived from its secret key.
                The message names the file and says what to do.
        """
        path = self._private_path / (_file_stem(uuid) + SECRET_SUFFIX)
        try:
            data, mode = read_key_file(path, "secret key")
        except FileNotFoundError:
            raise ConfigurationError(
                f"no key pair for uuid {_show(uuid)}: the secret key file {path} does not "
                f"exist; create a key pair with KeyStore.create({_show(uuid)}) or "
                "KeyStore.ensure, or move the .key_secret file written by "
                f"zmq.auth.create_certificates into {self._private_path}"
            ) from None
        if mode & _NOT_OWNER_ONLY:
            log.warning(
                "secret key file %s is accessible by group or others (mode %03o); "
                "restrict it with: chmod 600 %s",
                path,
                stat.S_IMODE(mode),
                path,
            )
        public, secret = parse_certificate(data, "secret key", path)
        if not secret:
            raise ConfigurationError(
                f"secret key file {path} has no secret-key line (it holds a public key "
                "only); put the .key_secret file of the pair there, not the .key file"
            )
        keys = _checked_pair(path, uuid, KeyPair(public=public, secret=secret))
        log.debug("loaded the key pair for %r from %s", uuid, path)
        return keys

    def public_key(self, uuid: bytes) -> bytes:
        """A peer's public key (Z85), from ``<public>/<uuid>.key``.

        Raises:
            ConfigurationError: the file is missing, unreadable or malformed.
        """
        path = self._public_path / (_file_stem(uuid) + PUBLIC_SUFFIX)
        try:
            data, _ = read_key_file(path, "public key")
        except FileNotFoundError:
            raise ConfigurationError(
                f"no public key for peer {_show(uuid)}: {path} does not exist; add it with "
                "KeyStore.add_public_key or copy the peer's .key file (written by "
                f"zmq.auth.create_certificates) into {self._public_path}"
            ) from None
        public, secret = parse_certificate(data, "public key", path)
        if secret:
            log.warning(
                "public key file %s also holds a secret key; the public folder is meant "
                "to be shared: replace the file with the pair's .key file",
                path,
            )
        try:
            return check_public_key(public)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"public key file {path} is unusable: {exc}; replace it with the peer's .key file"
            ) from exc

    def add_public_key(self, uuid: bytes, key: bytes) -> None:
        """Write (or replace) ``<public>/<uuid>.key`` holding ``key`` (Z85).

        Raises:
            ConfigurationError: ``uuid`` cannot name a file, ``key`` is not a
                Z85 public key, or the file cannot be written.
        """
        stem = _file_stem(uuid)
        self._write_public(uuid, stem, check_public_key(key))

    def remove_public_key(self, uuid: bytes) -> bool:
        """Delete ``<public>/<uuid>.key``; False if there was none."""
        path = self._public_path / (_file_stem(uuid) + PUBLIC_SUFFIX)
        if not remove_file(path):
            return False
        log.info("removed the public key of %r (%s)", uuid, path)
        return True

    def public_keys(self) -> dict[bytes, bytes]:
        """Every uuid -> public key in the public folder.

        Files that do not parse (or whose names are not valid uuids) are
        skipped with a warning; hidden files and other suffixes are ignored.
        """
        keys: dict[bytes, bytes] = {}
        for name in self._names(self._public_path, PUBLIC_SUFFIX):
            uuid = os.fsencode(name[: -len(PUBLIC_SUFFIX)])
            try:
                keys[uuid] = self.public_key(uuid)
            except ConfigurationError as exc:
                log.warning("skipping %s: %s", self._public_path / name, exc)
        return keys

    def __repr__(self) -> str:
        public = self._count(self._public_path, PUBLIC_SUFFIX)
        private = self._count(self._private_path, SECRET_SUFFIX)
        return f"<KeyStore {str(self._path)!r} public={public} private={private}>"

    # -- helpers ------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock file: one writer of pairs at a time, across processes."""
        path = self._path / _LOCK_NAME
        # Read-only is enough for flock, and 0644 lets a group sharing the
        # store take it too; a link planted in its place is not followed.
        flags = os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, PUBLIC_MODE)
        except OSError as exc:
            raise _LockUnavailableError(
                f"cannot open the key store's lock file {path}: {reason(exc)}; check that "
                f"{self._path} exists and this user may write to it"
            ) from exc
        try:
            self._take_lock(fd, path)
            yield
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def _take_lock(fd: int, path: Path) -> None:
        """Lock ``fd``, waiting at most ``LOCK_TIMEOUT`` seconds: a writer
        holds it for a few file writes, so one that holds it longer is
        stuck, and waiting on it for ever would hang this node's start."""
        deadline = time.monotonic() + LOCK_TIMEOUT
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except (BlockingIOError, PermissionError):  # (EACCES where flock is emulated)
                if time.monotonic() >= deadline:
                    raise ConfigurationError(
                        f"the key store's lock file {path} stayed locked for {LOCK_TIMEOUT:g} s "
                        "by another process: it may be stuck writing a key pair; stop it, "
                        "or try again"
                    ) from None
                time.sleep(pause)  # (flock has no timeout of its own)
                pause = min(pause * 2, 0.05)

    def _write_pair(self, uuid: bytes, stem: str, keys: KeyPair, *, overwrite: bool) -> None:
        """Write both files of a pair; the caller holds the lock.

        The old public file goes first and the new one comes last: whenever
        this stops, the public file is the secret one's or is missing (and
        ``ensure`` writes it again), never the public key of another pair.
        """
        secret_file = self._private_path / (stem + SECRET_SUFFIX)
        remove_file(self._public_path / (stem + PUBLIC_SUFFIX))
        try:
            write_file(secret_file, certificate(keys), SECRET_MODE, replace=overwrite)
        except FileExistsError:  # written by a process that does not take the lock
            raise _pair_exists(uuid, secret_file) from None
        self._write_public(uuid, stem, keys.public)

    def _restore_public(self, uuid: bytes, stem: str) -> KeyPair:
        """Our pair, after writing its missing public file from the secret
        file if this user may (a store it may only read still loads)."""
        try:
            with self._locked():  # else a create() under way could be undone
                keys = self.load(uuid)
                if not exists(self._public_path / (stem + PUBLIC_SUFFIX)):
                    self._rewrite_public(uuid, stem, keys.public)
                return keys
        except _LockUnavailableError as exc:
            log.warning("%s; loading the pair of %r without writing its public file", exc, uuid)
            return self.load(uuid)

    def _rewrite_public(self, uuid: bytes, stem: str, key: bytes) -> None:
        log.warning(
            "the public key file of %r was missing; writing it again from %s",
            uuid,
            self._private_path / (stem + SECRET_SUFFIX),
        )
        try:
            self._write_public(uuid, stem, key)
        except ConfigurationError as exc:  # a store this user may only read: it still loads
            log.warning("%s; going on without it", exc)

    def _write_public(self, uuid: bytes, stem: str, key: bytes) -> None:
        path = self._public_path / (stem + PUBLIC_SUFFIX)
        write_file(path, certificate(KeyPair(public=key, secret=b"")), PUBLIC_MODE)
        log.info("stored the public key of %r in %s", uuid, path)

    def _make_folders(self) -> None:
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            self._public_path.mkdir(exist_ok=True)
            self._make_private_folder()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the key store folders in {self._path}: {reason(exc)}; "
                "choose a path where this user can create folders"
            ) from exc

    def _make_private_folder(self) -> None:
        try:
            # Created 0700 & ~umask, never looser, then exactly 0700.
            self._private_path.mkdir(mode=_PRIVATE_DIR_MODE)
        except FileExistsError:
            # Made before, or by another process opening the store right now.
            if self._private_path.is_dir():
                return
            raise
        self._private_path.chmod(_PRIVATE_DIR_MODE)

    def _require_folders(self) -> None:
        for folder in (self._public_path, self._private_path):
            if not folder.is_dir():
                raise ConfigurationError(
                    f"key store folder {folder} does not exist; create it, or pass "
                    "create=True to KeyStore"
                )

    def _secure_private_folder(self) -> None:
        try:
            mode = stat.S_IMODE(self._private_path.stat().st_mode)
            if mode & _NOT_OWNER_ONLY:
                log.warning(
                    "private key folder %s was accessible by group or others (mode %03o); "
                    "setting it to 0700 before writing a secret key",
                    self._private_path,
                    mode,
                )
                self._private_path.chmod(_PRIVATE_DIR_MODE)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot use private key folder {self._private_path}: {reason(exc)}; "
                "it must exist and belong to this user"
            ) from exc

    @staticmethod
    def _names(folder: Path, suffix: str) -> list[str]:
        try:
            names = os.listdir(folder)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot list key folder {folder}: {reason(exc)}; check that it exists "
                "and is readable"
            ) from exc
        return sorted(n for n in names if n.endswith(suffix) and not n.startswith("."))

    @classmethod
    def _count(cls, folder: Path, suffix: str) -> str:
        try:
            return str(len(cls._names(folder, suffix)))
        except ConfigurationError:
            return "?"


class _LockUnavailableError(ConfigurationError):
    """The store's lock file cannot be opened (a store this user may only read)."""


class _KeyPairExistsError(ConfigurationError):
    """``create`` found a secret file already there (``ensure`` then loads it)."""


def _file_stem(uuid: bytes) -> str:
    """The file name (without suffix) for ``uuid``; raises ``ConfigurationError``."""
    if not isinstance(uuid, bytes):
        raise ConfigurationError(f"a uuid must be bytes, got {type(uuid).__name__}")
    problem = _uuid_problem(uuid)
    if problem:
        raise ConfigurationError(
            f"uuid {_show(uuid)} cannot name a key file: {problem}; use non-empty UTF-8 "
            f"of at most {MAX_UUID_LEN} bytes, without '/', '\\' or NUL, not starting "
            "with '.'"
        )
    return uuid.decode("utf-8")


def _uuid_problem(uuid: bytes) -> str:
    if not uuid:
        return "it is empty"
    if len(uuid) > MAX_UUID_LEN:
        return f"it is {len(uuid)} bytes long"
    try:
        text = uuid.decode("utf-8")
    except UnicodeDecodeError:
        return "it is not valid UTF-8"
    if "/" in text or "\\" in text:
        return "it contains a path separator"
    if "\x00" in text:
        return "it contains a NUL byte"
    if text.startswith("."):
        return "it starts with '.'"
    return ""


def _check_folder_name(name: object, what: str) -> None:
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise ConfigurationError(
            f"{what}={name!r} is not a folder name; give a plain name such as "
            "'public_keys' (a sub-folder of the key store's path)"
        )


def _checked_pair(path: Path, uuid: bytes, keys: KeyPair) -> KeyPair:
    renew = (
        f"make a new pair with KeyStore.create({_show(uuid)}, overwrite=True) and give "
        "peers its public key"
    )
    try:
        return check_key_pair(keys)
    except ConfigurationError as exc:
        if not _both_z85(keys):  # the message gives lengths and reasons, never values
            raise ConfigurationError(
                f"secret key file {path} is unusable: {exc}; {renew}"
            ) from exc
    # Not check_key_pair's message: it shows the public-key line, which in a
    # mangled file may well hold a secret key.
    raise ConfigurationError(
        f"secret key file {path} is unusable: its public-key line is not the public key "
        "of its secret-key line (the file was edited, or holds halves of two pairs); "
        f"restore the file from a backup, or {renew}"
    )


def _both_z85(keys: KeyPair) -> bool:
    try:
        check_public_key(keys.public)
        check_public_key(keys.secret)  # the same format check, for the secret half
    except ConfigurationError:
        return False
    return True


def _pair_exists(uuid: bytes, secret_file: Path) -> _KeyPairExistsError:
    return _KeyPairExistsError(
        f"a key pair for uuid {_show(uuid)} already exists ({secret_file}); load it with "
        "KeyStore.load, or pass overwrite=True to replace it (peers must then get the "
        "new public key)"
    )


def _show(uuid: bytes, limit: int = 60) -> str:
    """``uuid``'s repr, shortened: an error message need not hold 10 kB of uuid."""
    if len(uuid) <= limit:
        return repr(uuid)
    return f"{uuid[:limit]!r}... ({len(uuid)} bytes)"
