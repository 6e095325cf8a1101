"""Running the real command line in a subprocess, and reading what it left behind."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

from openpyxl import load_workbook

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outbox_messages(folder: Path) -> list[EmailMessage]:
    messages = []
    for path in sorted(folder.glob("*.eml")):
        messages.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return messages  # type: ignore[return-value]


def alerts_in(folder: Path) -> list[EmailMessage]:
    return [m for m in outbox_messages(folder) if "New safeguarding concern" in str(m["Subject"])]


def register_rows(path: Path, table: str = "Concerns") -> list[dict[str, object]]:
    workbook = load_workbook(path)
    for sheet in workbook.worksheets:
        if table in sheet.tables:
            ref = sheet.tables[table].ref
            cells = sheet[ref]
            headers = [c.value for c in cells[0]]
            return [
                dict(zip(headers, (c.value for c in row), strict=True))
                for row in cells[1:]
                if any(c.value is not None for c in row)
            ]
    raise AssertionError(f"no table {table} in {path}")
