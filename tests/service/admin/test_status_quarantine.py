"""Quarantined items waiting for a person: `status` says the exact command that records them
as dealt with, and says how many it does not list; docs/running.md's upgrade section tells the
admin the same, for the items an older version quarantined (which nobody could mark then)."""

from __future__ import annotations

import os
import re
import shlex
import time
from pathlib import Path

from service.admin.status import status_report
from service.app import App
from service.ledger import ItemState
from tests.cli.helpers import ROOT, run_cli

ALL = "prevent-service status --quarantine-read all"


def quarantine(app: App, n: int) -> None:
    for i in range(n):
        key = f"mail:old-{i:03d}"
        app.ledger.claim_item(key, "mail", None)
        app.ledger.finish(key, ItemState.QUARANTINED, note="could not be read as e-mail")


def test_status_names_the_command_and_the_items_it_does_not_list(memory_app: App) -> None:
    quarantine(memory_app, 23)
    healthy, lines = status_report(memory_app)
    text = "\n".join(lines)
    assert not healthy
    assert "quarantined (23) — a person must read these:" in text
    assert len(re.findall(r"(?m)^  ! mail:old-", text)) == 20
    assert "  … and 3 earlier one(s), not listed" in text
    assert f"'{ALL}'" in text  # the whole command, as typed, not "(or 'all')"


def upgrade_section() -> str:
    text = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    return text.split("\n## Upgrading\n", 1)[1].split("\n## ", 1)[0]


def test_the_upgrade_section_gives_the_command_and_it_makes_status_healthy(
    tmp_path: Path,
) -> None:
    section = upgrade_section()
    assert "quarantined" in section and "NOT HEALTHY" in section
    [line] = [
        line for line in section.splitlines() if line.rstrip().endswith("--quarantine-read all")
    ]
    argv = shlex.split(line)
    args = argv[argv.index("status") :]  # what follows the program and its --config
    assert args == ["status", "--quarantine-read", "all"]

    folder = tmp_path / "svc"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    config = str(folder / "config.toml")
    broken = folder / "inbox" / "broken.eml"
    broken.write_bytes(b"\x00\x01\x02 not mail at all\r\n")
    settled = time.time() - 60

    os.utime(broken, (settled, settled))
    assert run_cli("--config", config, "poll").returncode == 0
    before = run_cli("--config", config, "status")
    assert before.returncode == 1 and ALL in before.stdout

    after = run_cli("--config", config, *args)
    assert after.returncode == 0, after.stdout
    assert after.stdout.splitlines()[-1] == "healthy"
