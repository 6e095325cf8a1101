"""`check` on the config `init` writes fails, naming each placeholder key; the demo passes."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.helpers import run_cli


def test_check_fails_on_an_unedited_init_config_naming_each_key(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    assert run_cli("init", str(folder)).returncode == 0
    config = folder / "config.toml"
    assert not re.search(r"(?m)^demo\s*=", config.read_text())

    result = run_cli("--config", str(config), "check")

    assert result.returncode == 1, result.stdout + result.stderr
    for key in (
        "people.dsp.email",
        "people.admin_email",
        "intake.address",
        r'roles\."All staff"\[0\]',
        r"organisation\.domains\[0\]",
        r"areas\.Coventry\.contacts\[0\]\.email",
    ):
        assert re.search(rf"(?m)^FAIL +{key} +'.*' is a placeholder", result.stdout), key

    # Edited for real use, the same folder passes.
    text = config.read_text().replace("example.org", "trainingco.org.uk")
    config.write_text(text.replace(" (placeholder)", ""))
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 0, result.stdout
    assert re.search(r"(?m)^ok +placeholders +no example", result.stdout)


def test_the_demo_says_it_is_one_and_check_passes(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert run_cli("init", "--demo", str(folder)).returncode == 0
    assert re.search(r"(?m)^demo = true", (folder / "config.toml").read_text())

    result = run_cli("--config", str(folder / "config.toml"), "check")

    assert result.returncode == 0, result.stdout
    assert re.search(
        r"(?m)^ok +placeholders +\d+ example value\(s\) allowed: demo = true", result.stdout
    )
