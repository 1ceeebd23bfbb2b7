"""Suite-wide setup: every test stops its actors and leaves no thread behind.

The fixtures come from the library's own pytest plugin. Once the package is
installed (``pip install -e .``) pytest already loads that plugin through its
``pytest11`` entry point, under the name ``p2p0mq_actors``; listing the module
in ``pytest_plugins`` as well would make pytest fail at start-up with "Plugin
already registered under a different name". So the plugin is registered here
only when nothing registered it yet.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from p2p0mq_actors.testing import pytest_plugin

# Deterministic by default (the same examples on every run and in CI);
# HYPOTHESIS_PROFILE=explore searches new examples on each run.
settings.register_profile("deterministic", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not manager.is_registered(pytest_plugin):
        manager.register(pytest_plugin, pytest_plugin.__name__)


@pytest.fixture(autouse=True)
def _stop_actors_then_check_threads(actor_test: None) -> None:
    """Every test runs under ``actor_test``: see ``p2p0mq_actors.testing.pytest_plugin``."""
