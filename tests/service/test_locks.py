"""The cycle lock (ledger) and the workbook writer lock, across processes, on both code paths.

``posix`` is the code as it runs here. ``windows`` runs portalocker's Windows code path
(``msvcrt.locking``) with ``fcntl`` unimportable; see ``lock_child.py`` for what that stand-in
can and cannot show.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.ledger import Ledger
from service.locks import exclusive_lock, holder

ROOT = Path(__file__).resolve().parents[2]
MODES = ["posix", "windows"]


def child(mode: str, action: str, path: Path, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.service.lock_child", mode, action, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_child(mode: str, action: str, path: Path) -> str:
    proc = child(mode, action, path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.strip()


@contextmanager
def held(mode: str, path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = child(mode, "hold", path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "locked", (line, proc.stderr.read() if proc.stderr else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("mode", MODES)
def test_every_module_imports_without_fcntl(mode: str, tmp_path: Path) -> None:
    """On Windows there is no fcntl: service/ledger.py imported it at module level, so nothing
    started. Here fcntl is unimportable in both modes while every module is imported."""
    assert run_child(mode, "imports", tmp_path / "unused") == "ok"


@pytest.mark.parametrize("mode", MODES)
def test_the_intake_cycle_lock_excludes_a_second_process(mode: str, tmp_path: Path) -> None:
    ledger_path = tmp_path / "state" / "ledger.sqlite3"
    Ledger(ledger_path).db.close()
    with held(mode, ledger_path):
        assert run_child(mode, "try", ledger_path) == "busy: the cycle lock is held"
    # Released when the holder ended (here: killed): the lock died with its process.
    assert run_child(mode, "try", ledger_path) == "got"


@pytest.mark.parametrize("mode", MODES)
def test_the_workbook_writer_lock_names_its_holder(mode: str, tmp_path: Path) -> None:
    workbook = tmp_path / "register.xlsx"
    with held(mode, workbook) as proc:
        answer = run_child(mode, "try", workbook)
        assert answer.startswith("busy: register.xlsx is being written by another")
        # On Linux the holder's note can be read; on Windows the locked bytes cannot (the
        # stand-in cannot show that), and the message says "unknown" instead.
        assert f"pid {proc.pid} on " in answer
    assert run_child(mode, "try", workbook) == "got"


def test_a_lock_in_this_process_blocks_a_child_until_released(tmp_path: Path) -> None:
    path = tmp_path / "cycle.lock"
    with exclusive_lock(path) as mine:
        assert mine is True
        assert "pid" in holder(path)
        assert run_child("posix", "try", tmp_path / "cycle.sqlite3") == "got"  # another file
    with exclusive_lock(path) as again:
        assert again is True
    assert holder(path) == "unknown"  # emptied on release: no stale note
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_folder_without_write_permission_names_the_lock_file(tmp_path: Path) -> None:
    from service.locks import LockFileError

    missing = tmp_path / "no such folder" / "x.lock"
    with (
        pytest.raises(LockFileError, match=r"cannot create the lock file .*x\.lock"),
        exclusive_lock(missing),
    ):
        pass


def test_init_prints_the_next_command_quoted_for_the_local_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service import cli

    path = "C:/prevent service/config.toml"
    assert cli._quote(path) == "'C:/prevent service/config.toml'"
    monkeypatch.setattr(cli.os, "name", "nt")
    assert cli._quote(path) == '"C:/prevent service/config.toml"'  # cmd and PowerShell
