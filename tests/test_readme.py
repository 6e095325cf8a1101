"""The README's commands work as written after its first set-up command, in a new folder.

The set-up's ``python3 -m venv .venv && .venv/bin/pip install .`` is stood in for by a
``.venv/bin/prevent-service`` that is this test run's installed command (installing again
would take minutes and the network); everything after it runs exactly as the README shows it,
through a shell, from the folder the README says to run it from.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALLED = Path(sys.executable).parent / "prevent-service"
VENV_STEP = re.compile(r"^python3 -m venv \.venv$|^\.venv/bin/pip install ")


def first_setup_command() -> str:
    block = re.search(r"## Set-up.*?```sh\n(.*?)\n```", README, re.S)
    assert block, "the README has no Set-up command block"
    return block.group(1).strip()


def demo_commands() -> list[str]:
    """Every command the README shows for the demo folder (inline code naming its config)."""
    return [c for c in re.findall(r"`([^`\n]+)`", README) if "--config demo/config.toml" in c]


def test_every_demo_command_is_runnable_as_written_after_the_set_up() -> None:
    """Not bare ``prevent-service``: the set-up puts it in .venv/bin, not on PATH."""
    commands = demo_commands()
    assert len(commands) >= 5
    bare = [c for c in commands if not c.startswith(".venv/bin/prevent-service ")]
    assert not bare, f"not runnable after the set-up (not on PATH): {bare}"
    # Nor a bare `python`: the set-up makes .venv/bin/python, and Debian has no `python`.
    spans = re.findall(r"`([^`\n]+)`", README)
    pythons = [c for c in spans if re.search(r"(^|\s)python\s", c)]
    assert not pythons, f"not runnable after the set-up: {pythons}"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A checkout-like folder whose .venv/bin/prevent-service is the installed command."""
    assert INSTALLED.is_file(), f"the test run's environment has no {INSTALLED}"
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "prevent-service").symlink_to(INSTALLED)
    return tmp_path


def sh(command: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "PREVENT_SERVICE_CONFIG"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_readme_commands_run_in_a_new_folder(folder: Path) -> None:
    steps = [s.strip() for s in first_setup_command().split("&&")]
    assert [s for s in steps if VENV_STEP.match(s)], "the set-up no longer installs into .venv"
    rest = " && ".join(s for s in steps if not VENV_STEP.match(s))
    first = sh(rest, folder)
    assert first.returncode == 0, f"{rest}\n{first.stdout}{first.stderr}"
    assert list((folder / "demo" / "outbox").glob("*.eml"))
    # init's own "Next:" line runs as written too (the venv is not on PATH).
    following = re.search(r"^Next: (.+)$", first.stdout, re.M)
    assert following, first.stdout
    again = sh(following.group(1), folder)
    assert again.returncode == 0, f"{following.group(1)}\n{again.stdout}{again.stderr}"

    run_commands = [c for c in demo_commands() if c.endswith(" run")]
    assert len(run_commands) == 1
    for command in demo_commands():
        if command in run_commands:
            continue
        result = sh(command, folder)
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        assert result.stdout.strip(), command

    # The worker: it starts, and Ctrl-C (SIGINT) stops it cleanly.
    worker = subprocess.Popen(
        ["/bin/sh", "-c", "exec " + run_commands[0]],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stderr is not None
        assert "worker started" in worker.stdout.readline()
        for line in worker.stderr:  # Ctrl-C once it has done something, as a person would
            if "intake cycle" in line:
                break
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert "worker stopped" in out
