"""pytest plugin: `graph_server` (one emulator per session) and `graph` (reset for each test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import GraphEmulator


@pytest.fixture(scope="session")
def graph_server() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def graph(graph_server: GraphEmulator) -> Iterator[GraphEmulator]:
    graph_server.reset()
    yield graph_server
    # A 500 "emulatorBug" is the emulator's fault, not the code under test: fail loudly.
    errors = list(graph_server.internal_errors)
    graph_server.reset()
    if errors:
        pytest.fail("Graph emulator bug(s):\n" + "\n".join(errors), pytrace=False)
