"""The on-disk key store: p2p0mq's folders, zmq certificate files, safe permissions."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
from hypothesis import given
from hypothesis import strategies as st

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.core.ports import KeyPair
from p2p0mq_actors.transport import KeyStore
from p2p0mq_actors.transport import keystore as keystore_module
from p2p0mq_actors.transport.keys import check_public_key, generate_keypair
from p2p0mq_actors.transport.keystore import MAX_UUID_LEN

UUID = b"1~1~1~1"
PEER = b"2~2~2~2"
LOGGER = "p2p0mq_actors.transport"
# The CURVE test vectors of the ZeroMQ guide: a client pair and the server's public key.
CLIENT_PUBLIC = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
CLIENT_SECRET = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
SERVER_PUBLIC = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


# Lines that look like parts of a certificate, to get past the parser's first steps.
_cert_lines = st.sampled_from(
    ["metadata", "curve", "#", "public-key", "secret-key", "public-key =", 'secret-key = ""']
) | st.builds(
    lambda name, key: f'    {name} = "{key}"',
    st.sampled_from(["public-key", "secret-key"]),
    st.sampled_from([CLIENT_PUBLIC, CLIENT_SECRET, SERVER_PUBLIC]) | st.text(max_size=45),
)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_secret_file(store: KeyStore, uuid: bytes, text: str) -> Path:
    path = store.private_path / (uuid.decode() + ".key_secret")
    path.write_text(text)
    path.chmod(0o600)
    return path


def certificate(public: bytes, secret: bytes | None = None) -> str:
    text = f'metadata\ncurve\n    public-key = "{public.decode()}"\n'
    if secret is not None:
        text += f'    secret-key = "{secret.decode()}"\n'
    return text


@pytest.fixture
def umask_0() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# -- layout, create, load, ensure ----------------------------------------------


def test_a_new_store_makes_the_public_and_private_folders_under_its_path(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path / "base")

    assert (store.path, store.public_path, store.private_path) == (
        tmp_path / "base",
        tmp_path / "base" / "public_keys",
        tmp_path / "base" / "private_keys",
    )
    assert (store.public_path.is_dir(), mode_of(store.private_path)) == (True, 0o700)


def test_the_folder_names_are_settable(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, public_dir="pub", private_dir="priv")

    store.create(UUID)

    assert sorted(p.name for p in tmp_path.iterdir()) == [".keystore.lock", "priv", "pub"]
    assert (store.public_path, store.private_path) == (tmp_path / "pub", tmp_path / "priv")


def test_a_created_key_pair_loads_back_unchanged(store: KeyStore) -> None:
    keys = store.create(UUID)

    assert store.load(UUID) == keys
    assert store.public_key(UUID) == keys.public
    assert zmq.curve_public(keys.secret) == keys.public


def test_created_files_are_zmq_certificates_that_pyzmq_reads_back(store: KeyStore) -> None:
    keys = store.create(UUID)

    assert zmq.auth.load_certificate(store.private_path / "1~1~1~1.key_secret") == (
        keys.public,
        keys.secret,
    )
    assert zmq.auth.load_certificate(store.public_path / "1~1~1~1.key") == (keys.public, None)
    assert zmq.auth.load_certificates(store.public_path) == {keys.public: True}


def test_the_secret_file_is_0600_and_the_private_folder_0700_whatever_the_umask(
    tmp_path: Path, umask_0: None
) -> None:
    store = KeyStore(tmp_path / "keys")

    store.create(UUID)

    assert mode_of(store.private_path / "1~1~1~1.key_secret") == 0o600
    assert mode_of(store.private_path) == 0o700
    assert mode_of(store.public_path / "1~1~1~1.key") == 0o644


def test_a_private_folder_open_to_others_is_closed_before_a_secret_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    private = tmp_path / "private_keys"
    private.mkdir()
    private.chmod(0o755)
    store = KeyStore(tmp_path)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.create(UUID)

    assert mode_of(private) == 0o700
    assert [r.getMessage() for r in caplog.records] == [
        f"private key folder {private} was accessible by group or others (mode 755); "
        "setting it to 0700 before writing a secret key"
    ]


def test_create_refuses_to_overwrite_an_existing_pair(store: KeyStore) -> None:
    keys = store.create(UUID)
    secret_file = store.private_path / "1~1~1~1.key_secret"

    with pytest.raises(ConfigurationError) as info:
        store.create(UUID)

    assert str(info.value) == (
        f"a key pair for uuid b'1~1~1~1' already exists ({secret_file}); load it with "
        "KeyStore.load, or pass overwrite=True to replace it (peers must then get the "
        "new public key)"
    )
    assert store.load(UUID) == keys


def test_create_with_overwrite_replaces_both_files(store: KeyStore) -> None:
    old = store.create(UUID)

    new = store.create(UUID, overwrite=True)

    assert new != old
    assert (store.load(UUID), store.public_key(UUID)) == (new, new.public)
    assert mode_of(store.private_path / "1~1~1~1.key_secret") == 0o600


def test_ensure_creates_a_pair_the_first_time_and_loads_it_afterwards(
    store: KeyStore,
) -> None:
    first = store.ensure(UUID)

    assert store.ensure(UUID) == first
    assert store.load(UUID) == first


def test_writing_leaves_no_temporary_files_behind(store: KeyStore) -> None:
    store.create(UUID)
    store.create(UUID, overwrite=True)
    store.add_public_key(PEER, generate_keypair().public)
    store.add_public_key(PEER, generate_keypair().public)

    assert sorted(os.listdir(store.public_path)) == ["1~1~1~1.key", "2~2~2~2.key"]
    assert os.listdir(store.private_path) == ["1~1~1~1.key_secret"]


@pytest.mark.parametrize("cannot", ["lock", "write"])
def test_a_store_this_user_may_only_read_still_loads_a_pair_missing_its_public_file(
    store: KeyStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cannot: str,
) -> None:
    # As on a read-only mount holding only the secret file (root may write
    # anywhere here, so the lock file's place is taken, or a write refused).
    made = store.create(UUID)
    (store.public_path / "1~1~1~1.key").unlink()
    if cannot == "lock":
        (store.path / ".keystore.lock").unlink(missing_ok=True)
        (store.path / ".keystore.lock").mkdir()
    else:

        def read_only(*_args: object) -> None:
            raise OSError(30, "Read-only file system")

        monkeypatch.setattr(os, "replace", read_only)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.ensure(UUID) == made

    assert "Read-only file system" in caplog.text or "lock file" in caplog.text


def test_a_public_file_lost_between_the_two_writes_is_written_again_by_ensure(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The disk fills up after the secret file is in place, before the public one.
    public_file = store.public_path / "1~1~1~1.key"
    real_replace = os.replace

    def full_disk_for_the_public_file(src: str, dst: str) -> None:
        if Path(dst) == public_file:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk_for_the_public_file)
    with pytest.raises(ConfigurationError):
        store.create(UUID)
    monkeypatch.undo()
    assert os.listdir(store.private_path) == ["1~1~1~1.key_secret"]

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        keys = store.ensure(UUID)

    assert (store.load(UUID), store.public_key(UUID)) == (keys, keys.public)
    assert [r.getMessage() for r in caplog.records] == [
        f"the public key file of {UUID!r} was missing; writing it again from "
        f"{store.private_path}/1~1~1~1.key_secret"
    ]


def _keys_on_disk(store: KeyStore) -> tuple[bytes, bytes | None]:
    """The public key in our secret file, and the one in our public file (None if none)."""
    secret_side = zmq.auth.load_certificate(store.private_path / "1~1~1~1.key_secret")[0]
    try:
        return secret_side, zmq.auth.load_certificate(store.public_path / "1~1~1~1.key")[0]
    except OSError:
        return secret_side, None


def _on_each_rename(monkeypatch: pytest.MonkeyPatch, then: Callable[[], None]) -> None:
    """Call ``then`` after each file the store renames or links into place."""
    for name in ("replace", "link"):
        real = getattr(os, name)

        def spy(src: str, dst: str, *, real: Callable[[str, str], None] = real) -> None:
            real(src, dst)
            then()

        monkeypatch.setattr(os, name, spy)


def test_while_a_pair_is_replaced_the_public_file_never_holds_another_pairs_key(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create(UUID)
    seen: list[tuple[bytes, bytes | None]] = []
    _on_each_rename(monkeypatch, lambda: seen.append(_keys_on_disk(store)))

    new = store.create(UUID, overwrite=True)

    assert seen == [(new.public, None), (new.public, new.public)]


TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "rb") as lock:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("held")
    else:
        print("free")
"""


def test_another_process_cannot_take_the_stores_lock_while_a_pair_is_written(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = store.path / ".keystore.lock"
    answers: list[str] = []

    def ask_another_process() -> None:
        done = subprocess.run(
            [sys.executable, "-c", TRY_LOCK, str(lock)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        answers.append(done.stdout.strip() or done.stderr.strip().splitlines()[-1])

    _on_each_rename(monkeypatch, ask_another_process)
    store.create(UUID)
    monkeypatch.undo()
    ask_another_process()

    assert answers == ["held", "held", "free"]


# -- load failures ---------------------------------------------------------------


def test_loading_a_missing_pair_names_the_file_and_says_to_create_one(
    store: KeyStore,
) -> None:
    path = store.private_path / "1~1~1~1.key_secret"

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"no key pair for uuid b'1~1~1~1': the secret key file {path} does not exist; "
        "create a key pair with KeyStore.create(b'1~1~1~1') or KeyStore.ensure, or move "
        "the .key_secret file written by zmq.auth.create_certificates into "
        f"{store.private_path}"
    )


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_secret_file_is_a_configuration_error(store: KeyStore) -> None:
    store.create(UUID)
    path = store.private_path / "1~1~1~1.key_secret"
    path.chmod(0o000)

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"cannot read secret key file {path}: Permission denied; make it a file this "
        "user can read (chmod 600 for a secret key file)"
    )


@pytest.mark.parametrize(
    ("what", "name", "advice"),
    [
        ("secret key", "private_keys/1~1~1~1.key_secret", "chmod 600 for a secret key file"),
        ("public key", "public_keys/1~1~1~1.key", "chmod 644 for a public key file"),
    ],
)
def test_a_permission_error_while_reading_says_how_to_make_that_file_readable(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch, what: str, name: str, advice: str
) -> None:
    # The chmod 000 test above cannot run as root; this one fakes the refusal.
    store.create(UUID)
    path = store.path / name
    real_open = os.open

    def refuse(file: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", refuse)

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID) if what == "secret key" else store.public_key(UUID)

    assert str(info.value) == (
        f"cannot read {what} file {path}: Permission denied; make it a file this "
        f"user can read ({advice})"
    )


def test_a_secret_file_that_is_a_folder_is_a_configuration_error(store: KeyStore) -> None:
    path = store.private_path / "1~1~1~1.key_secret"
    path.mkdir()

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} is a folder, not a regular file; replace it with a file "
        "written by zmq.auth.create_certificates or KeyStore"
    )


@pytest.mark.timeout(10)  # before key files were opened without waiting, this hung
def test_a_fifo_as_the_secret_key_file_is_refused_at_once(store: KeyStore) -> None:
    path = store.private_path / "1~1~1~1.key_secret"
    os.mkfifo(path, 0o600)

    for read in (store.load, store.ensure):
        with pytest.raises(ConfigurationError) as info:
            read(UUID)

        assert str(info.value) == (
            f"secret key file {path} is a FIFO, not a regular file; replace it with a file "
            "written by zmq.auth.create_certificates or KeyStore"
        )


@pytest.mark.timeout(10)
def test_a_link_to_a_device_as_the_secret_key_file_is_refused(
    store: KeyStore,
) -> None:
    path = store.private_path / "1~1~1~1.key_secret"
    path.symlink_to("/dev/null")

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} is a character device, not a regular file; replace it "
        "with a file written by zmq.auth.create_certificates or KeyStore"
    )


@pytest.mark.timeout(10)
def test_a_fifo_or_device_among_public_key_files_is_skipped_with_a_warning(
    store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    peer = generate_keypair().public
    store.add_public_key(PEER, peer)
    fifo, device = store.public_path / "3~3~3~3.key", store.public_path / "4~4~4~4.key"
    os.mkfifo(fifo)
    device.symlink_to("/dev/null")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        keys = store.public_keys()

    assert keys == {PEER: peer}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"skipping {path}: public key file {path} is {kind}, not a regular file; replace "
            "it with a file written by zmq.auth.create_certificates or KeyStore",
        )
        for path, kind in ((fifo, "a FIFO"), (device, "a character device"))
    ]


def test_a_key_file_larger_than_16_kib_is_refused(store: KeyStore) -> None:
    keys = generate_keypair()
    padding = "# padding\n" * 2000  # 20 kB, then a valid certificate
    path = write_secret_file(store, UUID, padding + certificate(keys.public, keys.secret))

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} is larger than 16384 bytes, too large for a zmq certificate "
        "(a few hundred bytes); replace it with a file written by "
        "zmq.auth.create_certificates or KeyStore"
    )


@pytest.mark.parametrize(
    ("what", "name"),
    [("secret key", "private_keys/1~1~1~1.key_secret"), ("public key", "public_keys/1~1~1~1.key")],
)
def test_a_dangling_link_as_a_key_file_is_reported_as_one(
    store: KeyStore, what: str, name: str
) -> None:
    path = store.path / name
    path.symlink_to(store.path / "gone")
    reads = [store.load, store.ensure] if what == "secret key" else [store.public_key]

    for read in reads:
        with pytest.raises(ConfigurationError) as info:
            read(UUID)

        assert str(info.value) == (
            f"{what} file {path} is a dangling symbolic link: its target {store.path}/gone "
            f"does not exist; point the link at the {what} file, or remove the link"
        )


def test_a_secret_file_readable_by_others_loads_with_a_warning(
    store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    keys = store.create(UUID)
    path = store.private_path / "1~1~1~1.key_secret"
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = store.load(UUID)

    assert loaded == keys
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"secret key file {path} is accessible by group or others (mode 644); "
            f"restrict it with: chmod 600 {path}",
        )
    ]


def test_a_secret_file_without_a_public_key_line_is_malformed(store: KeyStore) -> None:
    path = write_secret_file(store, UUID, "metadata\ncurve\n    nothing here\n")

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} is not a zmq certificate: it has no public-key line; "
        "replace it with a file written by zmq.auth.create_certificates or KeyStore"
    )


def test_a_key_line_without_an_equals_sign_is_malformed(store: KeyStore) -> None:
    path = write_secret_file(store, UUID, "curve\n    public-key\n")

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} is not a zmq certificate: a public-key or secret-key "
        "line has no '='; replace it with a file written by zmq.auth.create_certificates "
        "or KeyStore"
    )


@given(content=st.binary(max_size=200) | st.lists(_cert_lines).map("\n".join).map(str.encode))
def test_any_file_content_either_loads_or_is_a_configuration_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as root:
        store = KeyStore(root)
        (store.private_path / "1~1~1~1.key_secret").write_bytes(content)
        (store.public_path / "1~1~1~1.key").write_bytes(content)

        for read in (store.load, store.public_key):
            with contextlib.suppress(ConfigurationError):
                read(UUID)
        assert set(store.public_keys()) <= {UUID}


@given(content=st.binary(max_size=200) | st.lists(_cert_lines).map("\n".join).map(str.encode))
def test_key_files_are_read_as_zmq_auth_reads_them(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as root:
        store = KeyStore(root)
        path = store.public_path / "1~1~1~1.key"
        path.write_bytes(content)
        theirs: bytes | None
        try:
            theirs = check_public_key(zmq.auth.load_certificate(path)[0])
        except (ValueError, IndexError, ConfigurationError):
            theirs = None

        ours: bytes | None
        try:
            ours = store.public_key(UUID)
        except ConfigurationError:
            ours = None

        assert ours == theirs


def test_a_secret_file_holding_only_a_public_key_is_refused(store: KeyStore) -> None:
    path = write_secret_file(store, UUID, certificate(generate_keypair().public))

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} has no secret-key line (it holds a public key only); "
        "put the .key_secret file of the pair there, not the .key file"
    )


def test_a_secret_file_with_a_truncated_secret_is_refused_without_showing_it(
    store: KeyStore,
) -> None:
    keys = generate_keypair()
    path = write_secret_file(store, UUID, certificate(keys.public, keys.secret[:30]))

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} is unusable: a CURVE secret key must be 40 bytes of Z85, "
        "got 30 bytes; make a new pair with KeyStore.create(b'1~1~1~1', overwrite=True) "
        "and give peers its public key"
    )
    assert keys.secret[:30].decode() not in str(info.value)


def test_a_secret_file_whose_halves_do_not_match_is_refused_without_showing_the_secret(
    store: KeyStore,
) -> None:
    mine, other = generate_keypair(), generate_keypair()
    path = write_secret_file(store, UUID, certificate(mine.public, other.secret))

    with pytest.raises(ConfigurationError) as info:
        store.load(UUID)

    assert str(info.value) == (
        f"secret key file {path} is unusable: its public-key line is not the public key of "
        "its secret-key line (the file was edited, or holds halves of two pairs); restore "
        "the file from a backup, or make a new pair with "
        "KeyStore.create(b'1~1~1~1', overwrite=True) and give peers its public key"
    )
    assert info.value.__cause__ is None
    assert other.secret.decode() not in str(info.value)
    assert other.secret.decode() not in repr(info.value)


# -- uuids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uuid", "problem"),
    [
        (b"", "it is empty"),
        (b"\xff\xfe", "it is not valid UTF-8"),
        (b"a/b", "it contains a path separator"),
        (b"../evil", "it contains a path separator"),
        (b"a\\b", "it contains a path separator"),
        (b"a\x00b", "it contains a NUL byte"),
        (b".hidden", "it starts with '.'"),
        (b"..", "it starts with '.'"),
        (b"x" * (MAX_UUID_LEN + 1), f"it is {MAX_UUID_LEN + 1} bytes long"),
    ],
)
def test_a_uuid_that_cannot_name_a_file_is_a_configuration_error_naming_it(
    store: KeyStore, uuid: bytes, problem: str
) -> None:
    shown = repr(uuid) if len(uuid) <= 60 else f"{uuid[:60]!r}... ({len(uuid)} bytes)"

    for call in (store.create, store.ensure, store.load, store.public_key):
        with pytest.raises(ConfigurationError) as info:
            call(uuid)

        assert str(info.value) == (
            f"uuid {shown} cannot name a key file: {problem}; use non-empty UTF-8 of at "
            f"most {MAX_UUID_LEN} bytes, without '/', '\\' or NUL, not starting with '.'"
        )
    assert (os.listdir(store.public_path), os.listdir(store.private_path)) == ([], [])


def test_a_uuid_that_is_not_bytes_is_a_configuration_error(store: KeyStore) -> None:
    with pytest.raises(ConfigurationError) as info:
        store.create("1~1~1~1")  # type: ignore[arg-type]

    assert str(info.value) == "a uuid must be bytes, got str"


def test_the_longest_allowed_uuid_still_fits_in_a_file_name(store: KeyStore) -> None:
    uuid = b"x" * MAX_UUID_LEN

    keys = store.create(uuid)

    assert store.load(uuid) == keys


def test_a_non_ascii_uuid_names_its_files_in_utf8(store: KeyStore) -> None:
    uuid = "pair-é-✓".encode()

    keys = store.create(uuid)

    assert sorted(os.listdir(store.private_path)) == ["pair-é-✓.key_secret"]
    assert store.public_keys() == {uuid: keys.public}


def _files_under(root: str) -> set[str]:
    return {os.path.join(top, name) for top, _, names in os.walk(root) for name in names}


@given(uuid=st.binary(max_size=300) | st.text(max_size=80).map(str.encode))
def test_any_uuid_either_works_or_is_a_configuration_error_and_stays_in_the_folders(
    uuid: bytes,
) -> None:
    with tempfile.TemporaryDirectory() as root:
        store = KeyStore(os.path.join(root, "keys"))
        try:
            keys = store.create(uuid)
            store.add_public_key(uuid, keys.public)
            assert (store.load(uuid), store.public_key(uuid)) == (keys, keys.public)
            assert store.public_keys() == {uuid: keys.public}
            assert store.remove_public_key(uuid) is True
        except ConfigurationError:
            pass

        for path in _files_under(root) - {str(store.path / ".keystore.lock")}:
            assert os.path.dirname(path) in (str(store.private_path), str(store.public_path))


# -- public keys -----------------------------------------------------------------


def test_public_keys_can_be_added_listed_and_removed(store: KeyStore) -> None:
    ours = store.create(UUID)
    peer = generate_keypair().public

    store.add_public_key(PEER, peer)

    assert store.public_key(PEER) == peer
    assert store.public_keys() == {UUID: ours.public, PEER: peer}
    assert store.remove_public_key(PEER) is True
    assert store.remove_public_key(PEER) is False
    assert store.public_keys() == {UUID: ours.public}


def test_adding_a_public_key_replaces_the_old_one(store: KeyStore) -> None:
    new = generate_keypair().public
    store.add_public_key(PEER, generate_keypair().public)

    store.add_public_key(PEER, new)

    assert store.public_keys() == {PEER: new}


def test_adding_a_malformed_public_key_writes_nothing(store: KeyStore) -> None:
    with pytest.raises(ConfigurationError) as info:
        store.add_public_key(PEER, b"not a key")

    assert str(info.value) == "a CURVE public key must be 40 bytes of Z85, got 9 bytes"
    assert os.listdir(store.public_path) == []


def test_a_missing_public_key_names_the_file_and_says_how_to_add_it(store: KeyStore) -> None:
    path = store.public_path / "2~2~2~2.key"

    with pytest.raises(ConfigurationError) as info:
        store.public_key(PEER)

    assert str(info.value) == (
        f"no public key for peer b'2~2~2~2': {path} does not exist; add it with "
        "KeyStore.add_public_key or copy the peer's .key file (written by "
        f"zmq.auth.create_certificates) into {store.public_path}"
    )


def test_a_malformed_public_key_file_is_a_configuration_error(store: KeyStore) -> None:
    path = store.public_path / "2~2~2~2.key"
    path.write_text('curve\n    public-key = "too short"\n')

    with pytest.raises(ConfigurationError) as info:
        store.public_key(PEER)

    assert str(info.value) == (
        f"public key file {path} is unusable: a CURVE public key must be 40 bytes of Z85, "
        "got 9 bytes; replace it with the peer's .key file"
    )


def test_listing_skips_unparsable_files_with_a_warning_and_ignores_other_files(
    store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    peer = generate_keypair().public
    store.add_public_key(PEER, peer)
    bad = store.public_path / "3~3~3~3.key"
    bad.write_text("garbage\n")
    (store.public_path / "README.txt").write_text("not a key\n")
    (store.public_path / ".tmp-0123.part").write_text("half written\n")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        keys = store.public_keys()

    assert keys == {PEER: peer}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"skipping {bad}: public key file {bad} is not a zmq certificate: it has no "
            "public-key line; replace it with a file written by "
            "zmq.auth.create_certificates or KeyStore",
        )
    ]


def test_a_public_file_holding_a_secret_key_warns_without_showing_it(
    store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    keys = generate_keypair()
    path = store.public_path / "2~2~2~2.key"
    path.write_text(certificate(keys.public, keys.secret))

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        public = store.public_key(PEER)

    assert public == keys.public
    assert [r.getMessage() for r in caplog.records] == [
        f"public key file {path} also holds a secret key; the public folder is meant to "
        "be shared: replace the file with the pair's .key file"
    ]


# -- interoperability with zmq.auth.create_certificates (what p2p0mq does) --------


def test_a_pair_made_by_zmq_create_certificates_loads_once_moved_into_the_folders(
    tmp_path: Path, store: KeyStore
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    public_file, secret_file = zmq.auth.create_certificates(scratch, "1~1~1~1")
    public, secret = zmq.auth.load_certificate(secret_file)
    shutil.move(public_file, store.public_path)
    shutil.move(secret_file, store.private_path)
    os.chmod(store.private_path / "1~1~1~1.key_secret", 0o600)

    assert secret is not None
    assert store.load(UUID) == KeyPair(public=public, secret=secret)
    assert store.public_key(UUID) == public
    assert store.ensure(UUID) == KeyPair(public=public, secret=secret)


def test_public_files_we_write_are_read_by_zmq_auth(store: KeyStore) -> None:
    peer = generate_keypair().public

    store.add_public_key(PEER, peer)

    assert zmq.auth.load_certificate(store.public_path / "2~2~2~2.key") == (peer, None)
    assert zmq.auth.load_certificates(store.public_path) == {peer: True}


def test_our_files_have_the_layout_zmq_create_certificates_writes(
    tmp_path: Path, store: KeyStore
) -> None:
    keys = store.create(UUID)
    zmq_public, zmq_secret = zmq.auth.create_certificates(tmp_path, "theirs")

    def body(path: str | Path) -> list[str]:  # all but the comment banner
        lines = Path(path).read_text().splitlines()
        return [line for line in lines if line and not line.startswith("#")]

    zmq_public_key, zmq_secret_key = zmq.auth.load_certificate(zmq_secret)
    assert zmq_secret_key is not None
    assert body(store.public_path / "1~1~1~1.key") == [
        line.replace(zmq_public_key.decode(), keys.public.decode()) for line in body(zmq_public)
    ]
    assert body(store.private_path / "1~1~1~1.key_secret") == [
        line.replace(zmq_public_key.decode(), keys.public.decode()).replace(
            zmq_secret_key.decode(), keys.secret.decode()
        )
        for line in body(zmq_secret)
    ]


# -- construction ----------------------------------------------------------------


def test_without_create_missing_folders_are_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeyStore(tmp_path, create=False)

    assert str(info.value) == (
        f"key store folder {tmp_path / 'public_keys'} does not exist; create it, or pass "
        "create=True to KeyStore"
    )
    assert os.listdir(tmp_path) == []


def test_without_create_existing_folders_are_used(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path).create(UUID)

    assert KeyStore(tmp_path, create=False).load(UUID) == keys


def test_a_store_path_that_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")

    with pytest.raises(ConfigurationError) as info:
        KeyStore(path)

    assert str(info.value) == (
        f"cannot create the key store folders in {path}: File exists; choose a path where "
        "this user can create folders"
    )


def test_a_private_folder_made_by_another_process_at_the_same_moment_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process opening the same new store makes the folder between
    # our look and our mkdir.
    private = tmp_path / "private_keys"
    real_mkdir = os.mkdir

    def mkdir_after_the_other(path: str | os.PathLike[str], mode: int = 0o777) -> None:
        if Path(path) == private:
            real_mkdir(path, 0o700)
        real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", mkdir_after_the_other)

    store = KeyStore(tmp_path)

    assert (store.private_path, mode_of(private)) == (private, 0o700)


def test_a_file_where_the_private_folder_goes_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "private_keys").write_text("")

    with pytest.raises(ConfigurationError) as info:
        KeyStore(tmp_path)

    assert str(info.value) == (
        f"cannot create the key store folders in {tmp_path}: File exists; choose a path "
        "where this user can create folders"
    )


@pytest.mark.parametrize("path", [b"/tmp/keys", None])
def test_a_store_path_that_is_not_str_or_pathlike_is_a_configuration_error(
    path: object,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeyStore(path)  # type: ignore[arg-type]

    assert str(info.value) == (
        f"a key store path must be a str or os.PathLike, got {type(path).__name__}; pass a "
        "folder such as Path.home() / '.p2p0mq'"
    )


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b"])
def test_a_folder_name_must_be_a_plain_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeyStore(tmp_path, private_dir=name)

    assert str(info.value) == (
        f"private_dir={name!r} is not a folder name; give a plain name such as "
        "'public_keys' (a sub-folder of the key store's path)"
    )


def test_the_public_and_private_folders_must_differ(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeyStore(tmp_path, public_dir="keys", private_dir="keys")

    assert str(info.value) == (
        "public_dir and private_dir are both 'keys': secret keys must not sit with public "
        "ones; give the folders different names"
    )


# -- secrets stay secret -----------------------------------------------------------


def test_the_repr_shows_the_path_and_counts_but_no_key(store: KeyStore) -> None:
    keys = store.create(UUID)
    store.add_public_key(PEER, generate_keypair().public)

    text = repr(store)

    assert text == f"<KeyStore {str(store.path)!r} public=2 private=1>"
    assert keys.secret.decode() not in text
    assert keys.public.decode() not in text


def test_the_repr_of_a_store_whose_folders_vanished_shows_unknown_counts(
    store: KeyStore,
) -> None:
    shutil.rmtree(store.path)

    assert repr(store) == f"<KeyStore {str(store.path)!r} public=? private=?>"


def error_of(action: Callable[[], object]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        action()
    return info.value


def test_no_error_message_shows_the_secret_key(store: KeyStore) -> None:
    keys = store.create(UUID)
    secret = keys.secret
    errors = [
        error_of(lambda: store.create(UUID)),
        # a secret pasted where a public key belongs, slightly mangled
        error_of(lambda: store.add_public_key(PEER, secret[:39])),
        error_of(lambda: store.add_public_key(PEER, secret[:39] + b" ")),
    ]
    write_secret_file(store, UUID, certificate(secret[:39], secret))
    errors.append(error_of(lambda: store.load(UUID)))
    write_secret_file(store, UUID, certificate(generate_keypair().public, secret))
    errors.append(error_of(lambda: store.load(UUID)))
    # the secret pasted on the public-key line too: a mismatch that must not echo it
    write_secret_file(store, UUID, certificate(secret, secret))
    errors.append(error_of(lambda: store.load(UUID)))

    for error in errors:
        assert secret[:39].decode() not in str(error)
        assert secret[:39].decode() not in repr(error)
        assert secret[:39].decode() not in repr(error.__cause__)
        assert secret[:39].decode() not in repr(error.__context__)


def test_loading_a_key_pair_never_logs_the_secret(
    store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        keys = store.ensure(UUID)
        store.ensure(UUID)
        store.load(UUID)
        store.public_keys()

    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (LOGGER, "INFO", f"stored the public key of {UUID!r} in {store.public_path}/1~1~1~1.key"),
        (
            LOGGER,
            "INFO",
            f"created a key pair for {UUID!r} in {store.private_path}/1~1~1~1.key_secret",
        ),
        (
            LOGGER,
            "DEBUG",
            f"loaded the key pair for {UUID!r} from {store.private_path}/1~1~1~1.key_secret",
        ),
        (
            LOGGER,
            "DEBUG",
            f"loaded the key pair for {UUID!r} from {store.private_path}/1~1~1~1.key_secret",
        ),
    ]
    assert keys.secret.decode() not in caplog.text


def test_a_lock_held_too_long_by_another_writer_is_an_error_not_a_hang(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create(UUID)  # the lock file exists
    monkeypatch.setattr(keystore_module, "LOCK_TIMEOUT", 0.1)
    held = os.open(store.path / ".keystore.lock", os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # another open file: as another process would
        with pytest.raises(ConfigurationError, match=r"stayed locked for 0\.1 s"):
            store.create(UUID, overwrite=True)
    finally:
        os.close(held)
    assert store.create(UUID, overwrite=True) == store.load(UUID)
