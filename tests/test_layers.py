"""The three layers, enforced: imports point inward.

- ``core/`` is pure: no zmq, no pykka, no threads, clocks, randomness, sockets
  or logging, and nothing from the package outside ``core/`` (relative imports
  included).
- Only ``transport/`` imports zmq.
- Only ``runtime/``, ``concerns/``, ``testing/`` and ``node.py`` import pykka.

Every import statement counts, wherever it is (inside functions and
``TYPE_CHECKING`` blocks too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "p2p0mq_actors"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

CORE_FORBIDDEN = (
    "zmq",
    "pykka",
    "threading",
    "_thread",
    "time",
    "random",
    "socket",
    "selectors",
    "asyncio",
    "concurrent",
    "multiprocessing",
    "subprocess",
    "logging",
)
ZMQ_LAYERS = ("transport",)
PYKKA_LAYERS = ("runtime", "concerns", "testing", "node.py")


@dataclass(frozen=True)
class Import:
    """One module an import statement brings in."""

    path: str  # relative to the repository, e.g. p2p0mq_actors/core/policy.py
    line: int
    statement: str  # the import as written
    module: str  # the absolute module name it resolves to


def module_name(relative: Path) -> tuple[str, bool]:
    """The dotted module name of a file under the package, and whether it is a package."""
    parts = [PACKAGE, *relative.with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imports_of(source: str, relative: Path) -> Iterator[Import]:
    """Every module that ``source`` (the file ``relative`` in the package) imports."""
    name, is_package = module_name(relative)
    package = name if is_package else name.rpartition(".")[0]
    path = f"{PACKAGE}/{relative.as_posix()}"
    for node in ast.walk(ast.parse(source, filename=path)):
        statement = ast.unparse(node) if isinstance(node, (ast.Import, ast.ImportFrom)) else ""
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, statement, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module, node.level, package)
            if base != PACKAGE:
                yield Import(path, node.lineno, statement, base)
                continue
            # `from .. import runtime` imports the subpackage p2p0mq_actors.runtime
            for alias in node.names:
                yield Import(path, node.lineno, statement, f"{base}.{alias.name}")


def resolve(module: str | None, level: int, package: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` inside ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        return f"<beyond {PACKAGE}>"
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def within(module: str, *roots: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def layer_of(relative: Path) -> str:
    return relative.parts[0] if len(relative.parts) > 1 else relative.name


def violations(source: str, relative: Path) -> list[str]:
    """What is wrong with the imports of one file, one line per problem."""
    layer = layer_of(relative)
    found: list[str] = []
    for imp in sorted(imports_of(source, relative), key=lambda imp: imp.line):
        where = f"{imp.path}:{imp.line}: `{imp.statement}`"
        if layer == "core" and within(imp.module, *CORE_FORBIDDEN):
            found.append(f"{where} imports {imp.module}; core/ must stay pure")
        elif (
            layer == "core"
            and within(imp.module, PACKAGE)
            and not within(imp.module, f"{PACKAGE}.core")
        ):
            found.append(f"{where} imports {imp.module}; core/ imports only from core/")
        elif within(imp.module, "zmq") and layer not in ZMQ_LAYERS:
            found.append(f"{where} imports {imp.module}; only transport/ may import zmq")
        elif within(imp.module, "pykka") and layer not in PYKKA_LAYERS:
            found.append(
                f"{where} imports {imp.module}; only runtime/, concerns/, testing/ "
                "and node.py may import pykka"
            )
    return found


def package_files() -> list[Path]:
    return sorted(path.relative_to(PACKAGE_DIR) for path in PACKAGE_DIR.rglob("*.py"))


def test_the_package_has_files_in_every_checked_layer() -> None:
    layers = {layer_of(path) for path in package_files()}

    assert {"core", "transport", "runtime", "testing"} <= layers


def test_every_module_imports_only_what_its_layer_allows() -> None:
    problems = [
        problem
        for relative in package_files()
        for problem in violations((PACKAGE_DIR / relative).read_text(), relative)
    ]

    assert problems == [], "layer violations:\n" + "\n".join(problems)


# -- the checker itself ------------------------------------------------------------------


def test_the_checker_reports_every_violation_in_line_order() -> None:
    source = "import pykka\n\ndef f():\n    import zmq\n\nimport time\n"

    assert violations(source, Path("core/bad.py")) == [
        "p2p0mq_actors/core/bad.py:1: `import pykka` imports pykka; core/ must stay pure",
        "p2p0mq_actors/core/bad.py:4: `import zmq` imports zmq; core/ must stay pure",
        "p2p0mq_actors/core/bad.py:6: `import time` imports time; core/ must stay pure",
    ]


@pytest.mark.parametrize(
    ("file", "source", "expected"),
    [
        (
            "core/bad.py",
            "import zmq.asyncio",
            "p2p0mq_actors/core/bad.py:1: `import zmq.asyncio` imports zmq.asyncio; "
            "core/ must stay pure",
        ),
        (
            "core/bad.py",
            "\n\ndef f():\n    from time import monotonic",
            "p2p0mq_actors/core/bad.py:4: `from time import monotonic` imports time; "
            "core/ must stay pure",
        ),
        (
            "core/bad.py",
            "from ..runtime.clock import MonotonicClock",
            "p2p0mq_actors/core/bad.py:1: `from ..runtime.clock import MonotonicClock` "
            "imports p2p0mq_actors.runtime.clock; core/ imports only from core/",
        ),
        (
            "core/__init__.py",
            "from .. import testing",
            "p2p0mq_actors/core/__init__.py:1: `from .. import testing` "
            "imports p2p0mq_actors.testing; core/ imports only from core/",
        ),
        (
            "core/bad.py",
            "import p2p0mq_actors.node",
            "p2p0mq_actors/core/bad.py:1: `import p2p0mq_actors.node` "
            "imports p2p0mq_actors.node; core/ imports only from core/",
        ),
        (
            "runtime/peer.py",
            "from zmq import Again",
            "p2p0mq_actors/runtime/peer.py:1: `from zmq import Again` imports zmq; "
            "only transport/ may import zmq",
        ),
        (
            "node.py",
            "import zmq",
            "p2p0mq_actors/node.py:1: `import zmq` imports zmq; only transport/ may import zmq",
        ),
        (
            "transport/sockets.py",
            "import pykka",
            "p2p0mq_actors/transport/sockets.py:1: `import pykka` imports pykka; "
            "only runtime/, concerns/, testing/ and node.py may import pykka",
        ),
        (
            "cli.py",
            "from pykka import ActorRef",
            "p2p0mq_actors/cli.py:1: `from pykka import ActorRef` imports pykka; "
            "only runtime/, concerns/, testing/ and node.py may import pykka",
        ),
    ],
)
def test_the_checker_names_file_line_and_import_of_a_violation(
    file: str, source: str, expected: str
) -> None:
    assert violations(source, Path(file)) == [expected]


@pytest.mark.parametrize(
    ("file", "source"),
    [
        ("core/ok.py", "from .errors import MessageError\nfrom . import message\nimport msgpack"),
        ("core/ok.py", "import timeit\nimport zmqlike\nfrom p2p0mq_actors.core import errors"),
        ("core/__init__.py", "from .policy import FailurePolicy\nfrom . import errors"),
        ("transport/sockets.py", "import zmq\nfrom zmq.auth.thread import ThreadAuthenticator"),
        ("runtime/peer.py", "import pykka\nfrom ..transport import sockets"),
        ("concerns/base.py", "import pykka"),
        ("testing/fake_socket.py", "import pykka\nimport threading"),
        ("node.py", "import pykka\nfrom .runtime import clock"),
    ],
)
def test_the_checker_allows_what_each_layer_may_import(file: str, source: str) -> None:
    assert violations(source, Path(file)) == []
