"""The alert's "Original" on the local default: the processed copy's path, to open it."""

from __future__ import annotations

import glob
from pathlib import Path

from tests.cli.helpers import outbox_messages, run_cli


def test_the_alert_names_the_processed_copys_path(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert run_cli("init", "--demo", str(demo)).returncode == 0
    assert run_cli("--config", str(demo / "config.toml"), "poll").returncode == 0
    alerts = [
        m.get_body(("plain",)).get_content()
        for m in outbox_messages(demo / "outbox")
        if "New safeguarding concern" in str(m["Subject"])
    ]
    originals = [
        line.split(":", 1)[1].strip()
        for text in alerts
        for line in text.splitlines()
        if line.startswith("Original:") and "Forms response" not in line
    ]
    assert originals, alerts
    for original in originals:
        path, _, note = original.partition(" (")
        assert note == "the intake folder's processed copy of the file)"
        # The path, as written, opens exactly one file: the message in processed/.
        [found] = glob.glob(path)
        assert Path(found).parent.resolve() == (demo / "inbox" / "processed").resolve()
        assert "eml-" in Path(found).name and found.endswith(".eml")
