"""What `pip install .` ships: every template, example config and demo file is package data."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_in_the_packages_is_declared_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    data = project["tool"]["setuptools"]["package-data"]
    shipped = set(find_packages(ROOT, include=include))
    roots = ("service", "connectors", "schedules", "templates", "config")
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for root in roots
        for init in (ROOT / root).rglob("__init__.py")
    }
    assert set(roots) <= on_disk
    assert on_disk <= shipped, f"packages pip install would leave out: {on_disk - shipped}"
    missing = []
    for package in ("templates", "config"):
        for path in (ROOT / package).rglob("*"):
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(ROOT / package).as_posix()
            if not any(fnmatch(relative, pattern) for pattern in data.get(package, [])):
                missing.append(f"{package}/{relative}")
    assert not missing, f"not shipped by pip install: {missing}"
    # Data beside the code (the triage knowledge file) is declared too.
    for path in (ROOT / "service").rglob("*"):
        if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
            continue
        package = ".".join(path.parent.relative_to(ROOT).parts)
        if not any(fnmatch(path.name, pattern) for pattern in data.get(package, [])):
            missing.append(path.relative_to(ROOT).as_posix())
    assert not missing, f"not shipped by pip install: {missing}"


def test_the_demo_and_templates_load_from_the_installed_packages() -> None:
    from importlib import resources

    assert resources.files("config").joinpath("example-local.toml").is_file()
    names = {p.name for p in resources.files("config").joinpath("demo", "mail").iterdir()}
    assert any(n.endswith(".eml") for n in names)
    assert resources.files("service.triage").joinpath("knowledge.toml").is_file()
    templates = {p.name for p in resources.files("templates").iterdir()}
    for pair in ("alert_summary", "alert_full", "acknowledgement", "quarantine_notice"):
        assert {f"{pair}.html.j2", f"{pair}.txt.j2"} <= templates


def test_the_systemd_unit_runs_the_worker_unprivileged_and_keeps_files_private() -> None:
    import configparser
    import shlex

    from service.cli import _parser

    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(ROOT / "config" / "systemd" / "prevent-service.service", encoding="utf-8")
    service = unit["Service"]

    program, *args = shlex.split(service["ExecStart"])
    assert program.endswith("/prevent-service")
    parsed = _parser().parse_args(args)  # the unit must not drift from the CLI
    assert parsed.command == "run" and str(parsed.config).endswith("config.toml")
    assert str(parsed.config).startswith(service["WorkingDirectory"])
    assert service["User"] not in {"root", "0"}
    assert service["UMask"] == "0077"
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"
    assert service["WorkingDirectory"] in service["ReadWritePaths"].split()
