"""Kill -9 the real CLI on Graph between a draft's creation (201) and recording its id, rerun:
no draft is left in the shared mailbox and nothing is sent twice (issue 9, point 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import ROOT
from tests.cli.test_e2e_graph import assert_each_concern_once, cli, site  # noqa: F401
from tests.connectors.harness_graph import MAILBOX, SECRET, SECRET_ENV

# Runs the real CLI, but SIGKILLs itself right after Graph created the n-th draft, before
# the sender could record the draft's id.
KILLER = """
import os, signal, sys
from connectors.graph_mail import GraphSender
from service.cli import main
nth = int(sys.argv[1])
made = 0
original = GraphSender._create_draft
def create_then_die(self, message):
    global made
    draft = original(self, message)
    made += 1
    if made == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return draft
GraphSender._create_draft = create_then_die
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 3, 6])  # the first alert, a later alert, an acknowledgement
def test_kill_after_a_draft_is_made_leaves_no_draft_and_no_duplicate(
    site: Path,  # noqa: F811
    graph: Any,
    nth: int,
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(nth), "--config", str(site / "config.toml"), "poll"],
        cwd=ROOT,
        env={**os.environ, SECRET_ENV: SECRET},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # the orphan the kill left (with drafts made a group at a time, maybe recorded ones too)
    assert graph.folder_messages(MAILBOX, "drafts") != []

    output = ""
    for _ in range(2):
        result = cli(site, "poll")
        output += result.stdout + result.stderr
        assert result.returncode in (0, 1), output

    assert_each_concern_once(graph, output)  # includes: Drafts is empty
    assert graph.folder_messages(MAILBOX, "deleteditems") == [], output
    status = cli(site, "status")
    assert "drafted in" not in status.stdout, status.stdout
