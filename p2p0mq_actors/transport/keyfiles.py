"""Key files: zmq certificates written whole and read only from regular files.

Rules:
- Every file is written to a temporary file in its own folder, then renamed
  into place: a reader sees the old file or the new one, never half of one.
  Temporary names start with ``.``, which no uuid may, so listings skip them.
- A file is created with its mode given at creation (``O_EXCL``), so a
  secret one is never readable by others, not even for an instant.
- A key file is opened, then checked: it must be a regular file of at most
  ``MAX_KEY_FILE`` bytes. Opening does not wait (``O_NONBLOCK``), so a FIFO
  is refused instead of blocking for ever; the bytes are parsed as
  ``zmq.auth.load_certificate`` parses them.
- Every error is a ``ConfigurationError`` that names the file, what is wrong
  and what to do, and never holds a key.
"""

from __future__ import annotations

import datetime
import os
import secrets
import stat
from contextlib import suppress
from pathlib import Path

from ..core.errors import ConfigurationError
from ..core.ports import KeyPair

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
MAX_KEY_FILE = 16 * 1024
"""The largest key file read: a certificate is a few hundred bytes, metadata included."""
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

# The banners pyzmq writes, so our files read like the ones p2p0mq makes.
_SECRET_BANNER = (
    "#   ****  Generated on {now} by p2p0mq-actors  ****\n"
    "#   ZeroMQ CURVE **Secret** Certificate\n"
    "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
)
_PUBLIC_BANNER = (
    "#   ****  Generated on {now} by p2p0mq-actors  ****\n"
    "#   ZeroMQ CURVE Public Certificate\n"
    "#   Exchange securely, or use a secure mechanism to verify the contents\n"
    "#   of this file after exchange.\n\n"
)


def certificate(keys: KeyPair) -> bytes:
    """A zmq certificate file's text; a public one when ``keys.secret`` is empty."""
    now = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
    banner = _SECRET_BANNER if keys.secret else _PUBLIC_BANNER
    lines = [banner.format(now=now) + "metadata", "curve"]
    lines.append(f'    public-key = "{keys.public.decode("ascii")}"')
    if keys.secret:
        lines.append(f'    secret-key = "{keys.secret.decode("ascii")}"')
    return ("\n".join(lines) + "\n").encode("ascii")


def write_file(path: Path, data: bytes, mode: int, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file created with ``mode``.

    With ``replace`` False an existing ``path`` is left alone and
    ``FileExistsError`` raised (``os.link`` refuses atomically).
    """
    temp = path.with_name(f".tmp-{secrets.token_hex(8)}.part")
    try:
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        with open(fd, "wb") as file:
            os.fchmod(fd, mode)  # the umask may have removed bits we want (never added)
            file.write(data)
            file.flush()
            os.fsync(fd)
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    finally:
        with suppress(OSError):
            os.unlink(temp)


def _unwritable(path: Path, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"cannot write key file {path}: {reason(exc)}; check that {path.parent} exists "
        "and this user may write to it"
    )


def read_key_file(path: Path, what: str) -> tuple[bytes, int]:
    """The bytes and mode of the regular file ``path``; ``FileNotFoundError`` if none.

    The opened file is checked, not the name: a check by name, then an open,
    could meet two different files.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        target = _link_target(path)
        if target is None:
            raise
        raise _dangling(what, path, target) from None
    except OSError as exc:
        raise _unreadable(what, path, exc) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_file(what, path, mode)
        with open(fd, "rb", closefd=False) as file:
            data = file.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise _unreadable(what, path, exc) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise ConfigurationError(
            f"{what} file {path} is larger than {MAX_KEY_FILE} bytes, too large for a zmq "
            "certificate (a few hundred bytes); replace it with a file written by "
            "zmq.auth.create_certificates or KeyStore"
        )
    return data, mode


def parse_certificate(data: bytes, what: str, path: Path) -> tuple[bytes, bytes | None]:
    """The public and secret keys in ``data``, read as ``zmq.auth.load_certificate`` reads.

    That function takes a file name only, which might name another file by
    the time it opens it; so the checked bytes are parsed here, line by line
    in the same way, and keep its results.
    """
    public: bytes | None = None
    secret: bytes | None = None
    for raw in data.split(b"\n"):
        line = raw.strip()
        if line.startswith(b"public-key"):
            public = _key_value(line, what, path)
        elif line.startswith(b"secret-key"):
            secret = _key_value(line, what, path)
        if public and secret:
            break
    if public is None:
        raise _malformed(what, path, "it has no public-key line")
    return public, secret


def _key_value(line: bytes, what: str, path: Path) -> bytes:
    _, equals, value = line.partition(b"=")
    if not equals:
        raise _malformed(what, path, "a public-key or secret-key line has no '='")
    return value.strip(b" \t'\"")


def _malformed(what: str, path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{what} file {path} is not a zmq certificate: {why}; replace it with a file "
        "written by zmq.auth.create_certificates or KeyStore"
    )


def _unreadable(what: str, path: Path, exc: OSError) -> ConfigurationError:
    mode = SECRET_MODE if what == "secret key" else PUBLIC_MODE
    return ConfigurationError(
        f"cannot read {what} file {path}: {reason(exc)}; make it a file this user can "
        f"read (chmod {mode:o} for a {what} file)"
    )


def _not_a_file(what: str, path: Path, mode: int) -> ConfigurationError:
    return ConfigurationError(
        f"{what} file {path} is {_file_kind(mode)}, not a regular file; replace it with a "
        "file written by zmq.auth.create_certificates or KeyStore"
    )


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def _dangling(what: str, path: Path, target: str) -> ConfigurationError:
    return ConfigurationError(
        f"{what} file {path} is a dangling symbolic link: its target {target} does not "
        f"exist; point the link at the {what} file, or remove the link"
    )


def _link_target(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # not a link (or gone)
        return None


def remove_file(path: Path) -> bool:
    """Delete ``path``; False if there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigurationError(
            f"cannot remove public key file {path}: {reason(exc)}; check the folder's permissions"
        ) from exc
    return True


def exists(path: Path) -> bool:
    try:
        path.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigurationError(
            f"cannot look for key file {path}: {reason(exc)}; check that {path.parent} "
            "is a folder this user may read"
        ) from exc
    return True


def reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
