"""The pytest plugin, run against small test files with pytester."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pykka
import pytest

from p2p0mq_actors.node import running_nodes
from p2p0mq_actors.testing import pytest_plugin
from p2p0mq_actors.testing.clock import ManualClock

pytest_plugins = ["pytester"]

# The plugin is registered by hand in the inner runs; blocking the entry point
# keeps that working once the package is installed (one plugin, one name).
INNER_ARGS = ("-p", "no:p2p0mq_actors", "-p", "no:cacheprovider")
ROOT_CONFTEST = Path(__file__).parents[1] / "conftest.py"
REPO_ROOT = Path(pytest_plugin.__file__).parents[2]


class ReleaseEvent:
    """A plugin giving the inner tests an event that the outer test sets to end their threads."""

    def __init__(self) -> None:
        self.event = threading.Event()

    @pytest.fixture
    def release(self) -> threading.Event:
        return self.event


def join_threads_named(name: str) -> None:
    for thread in threading.enumerate():
        if thread.name == name:
            thread.join(5)


def test_a_test_that_leaves_a_thread_running_errors_naming_the_thread(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import threading

        def test_leaves_a_thread(no_thread_leak, release):
            threading.Thread(target=release.wait, name="left-behind", daemon=True).start()
        """
    )
    plugin = ReleaseEvent()
    try:
        result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin, plugin])
    finally:
        plugin.event.set()
        join_threads_named("left-behind")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_thread*",
            "the test left 1 thread running 2 s after it ended: 'left-behind'. "
            "Stop every actor, close every clock and socket, and join every thread "
            "the test starts.",
        ]
    )


def test_a_test_whose_threads_end_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        def test_joins_its_thread(no_thread_leak):
            thread = threading.Thread(target=lambda: None, name="joined")
            thread.start()
            thread.join(5)

        def test_thread_ends_on_its_own_after_the_test(no_thread_leak):
            go = threading.Event()
            threading.Thread(target=go.wait, args=(5,), name="ending").start()
            go.set()
        """
    )

    result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin])

    result.assert_outcomes(passed=2)


def test_actor_cleanup_stops_an_actor_the_test_left_running(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pykka

        class Idle(pykka.ThreadingActor):
            pass

        def test_leaves_an_actor(actor_cleanup):
            Idle.start()
            assert len(pykka.ActorRegistry.get_all()) == 1
        """
    )

    result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin])

    result.assert_outcomes(passed=1)
    assert pykka.ActorRegistry.get_all() == []


def test_without_actor_cleanup_the_actor_would_still_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pykka

        class Idle(pykka.ThreadingActor):
            pass

        def test_leaves_an_actor():
            Idle.start()
        """
    )

    result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin])
    left = [ref.actor_class.__name__ for ref in pykka.ActorRegistry.get_all()]
    pykka.ActorRegistry.stop_all(timeout=5)

    result.assert_outcomes(passed=1)
    assert left == ["Idle"]


def test_actor_test_stops_actors_before_it_checks_threads(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pykka

        class Idle(pykka.ThreadingActor):
            pass

        def test_leaves_actors(actor_test):
            Idle.start()
            Idle.start()
        """
    )

    result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin])

    result.assert_outcomes(passed=1)
    assert pykka.ActorRegistry.get_all() == []


def test_actor_test_still_catches_a_plain_thread_left_behind(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        def test_leaves_a_thread(actor_test, release):
            threading.Thread(target=release.wait, name="plain", daemon=True).start()
        """
    )
    plugin = ReleaseEvent()
    try:
        result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin, plugin])
    finally:
        plugin.event.set()
        join_threads_named("plain")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["the test left 1 thread running 2 s after it ended: 'plain'.*"])


def test_manual_clock_gives_each_test_a_fresh_clock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from p2p0mq_actors.testing.clock import ManualClock

        def test_first(manual_clock):
            assert isinstance(manual_clock, ManualClock)
            manual_clock.call_later(1, lambda: None)
            manual_clock.advance(5)
            assert manual_clock.now() == 1005.0

        def test_second(manual_clock):
            assert (manual_clock.now(), manual_clock.pending) == (1000.0, 0)
        """
    )

    result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin])

    result.assert_outcomes(passed=2)


def test_the_manual_clock_fixture_in_this_suite(manual_clock: ManualClock) -> None:
    assert repr(manual_clock) == "<ManualClock now=1000.000000 pending=0>"


ENTRY_POINT_DIST = {
    "METADATA": "Metadata-Version: 2.1\nName: fake-p2p0mq-actors\nVersion: 0.0.0\n",
    "entry_points.txt": "[pytest11]\np2p0mq_actors = p2p0mq_actors.testing.pytest_plugin\n",
}


@pytest.mark.parametrize(
    ("installed", "registered_as"),
    [(False, "p2p0mq_actors.testing.pytest_plugin"), (True, "p2p0mq_actors")],
    ids=["plugin-from-conftest", "plugin-from-entry-point"],
)
def test_the_suite_conftest_registers_the_plugin_once_with_or_without_the_entry_point(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    installed: bool,
    registered_as: str,
) -> None:
    site = pytester.mkdir("site")
    if installed:  # what `pip install -e .` adds, as far as pytest can tell
        dist = site / "fake_p2p0mq_actors-0.0.0.dist-info"
        dist.mkdir()
        for name, text in ENTRY_POINT_DIST.items():
            (dist / name).write_text(text)
    path = [str(site), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(
        f"""
        from p2p0mq_actors.testing import pytest_plugin

        def test_registered_once(request, manual_clock):
            names = [
                name
                for name, plugin in request.config.pluginmanager.list_name_plugin()
                if plugin is pytest_plugin
            ]
            assert names == [{registered_as!r}]
        """
    )

    # Not installed: block the entry point, in case the package is installed for real.
    blocked = () if installed else ("-p", "no:p2p0mq_actors")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *blocked)

    result.assert_outcomes(passed=1)


def test_actor_test_stops_a_node_the_test_left_running_and_fails_naming_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from p2p0mq_actors import KeyStore, Node

        def test_forgets_its_node(actor_test, tmp_path):
            Node(b"forgotten", keys=KeyStore(tmp_path / "keys"))

        def test_stops_its_node(actor_test, tmp_path):
            with Node(b"minded", keys=KeyStore(tmp_path / "keys")):
                pass
        """
    )

    result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin])

    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*left 1 Node(s) running: b'forgotten' (stopped now)*"])
    assert running_nodes() == []


@pytest.mark.parametrize("fixture", ["actor_test", "actor_cleanup"])
def test_the_fixtures_spare_a_node_of_a_wider_scope_and_what_the_test_made_it_start(
    pytester: pytest.Pytester, fixture: str
) -> None:
    """It used to stop every actor of the process, the shared node's too
    (the next test found it half dead), and to blame the test for the
    node's timer thread, started by the test's first request."""
    pytester.makepyfile(
        """
        import pytest
        from p2p0mq_actors import Concern, KeyStore, Node

        class Echo(Concern):
            command = b"echo"

            def on_request(self, message):
                return dict(message.payload)

        @pytest.fixture(scope="module")
        def pair(tmp_path_factory):
            root = tmp_path_factory.mktemp("keys")
            with Node(b"a", keys=KeyStore(root / "a")) as a:
                with Node(b"b", keys=KeyStore(root / "b")) as b:
                    b.add_concern(Echo)
                    yield a, b

        def connect(a, b):
            a.add_peer(b"b", b.endpoint, b.keys.public_key(b"b"))
            b.add_peer(b"a", a.endpoint, a.keys.public_key(b"a"))

        def test_first(pair, FIXTURE):
            a, b = pair
            connect(a, b)  # each node starts a connection's actor in the test
            assert a.request(b"b", b"echo", {"n": 1}, timeout=5).get(timeout=5).payload == {"n": 1}

        def test_second(pair, FIXTURE):
            a, b = pair
            connect(a, b)  # known already: nothing changes
            assert a.request(b"b", b"echo", {"n": 2}, timeout=5).get(timeout=5).payload == {"n": 2}
        """.replace("FIXTURE", fixture)
    )

    result = pytester.runpytest(*INNER_ARGS, plugins=[pytest_plugin])

    result.assert_outcomes(passed=2)
    assert running_nodes() == []
