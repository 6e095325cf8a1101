"""`poll` right after files are dropped: the printed summary says how many wait for the next
poll and why, so nothing looks lost."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.cli.helpers import run_cli

MAIL = (
    b"From: Jordan Lee <jordan.lee@example.org>\r\nTo: safeguarding@example.org\r\n"
    b"Subject: A concern\r\nMessage-ID: <%d@example.org>\r\n\r\nA learner said something.\r\n"
)


def test_poll_says_how_many_files_wait_for_the_next_poll(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert run_cli("init", "--demo", str(demo)).returncode == 0
    config = str(demo / "config.toml")
    for f in (demo / "inbox").glob("*.eml"):
        f.unlink()
    settled = demo / "inbox" / "settled.eml"
    settled.write_bytes(MAIL % 1)
    os.utime(settled, (time.time() - 60, time.time() - 60))
    for n in (2, 3):  # just written (dated ahead, so a slow start cannot let them settle)
        fresh = demo / "inbox" / f"fresh{n}.eml"
        fresh.write_bytes(MAIL % n)
        os.utime(fresh, (time.time() + 300, time.time() + 300))

    result = run_cli("--config", config, "poll")

    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("intake:"))
    assert [p.name for p in (demo / "inbox" / "processed").glob("*.eml")] != []
    assert sorted(p.name for p in (demo / "inbox").glob("*.eml")) == ["fresh2.eml", "fresh3.eml"]
    assert "waiting=2 (arrived in the last" in line
    assert "may still be being written: taken on the next poll)" in line
