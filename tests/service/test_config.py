"""Config: validated once; errors name the key path; unknown keys and bad values refused."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from service.config import load_config, parse_config, secret_from_env
from service.errors import ConfigError
from tests.conftest import BASE_CONFIG, merge

EXAMPLES = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.parametrize("name", ["example-local.toml", "example-m365.toml"])
def test_shipped_examples_are_valid(name: str) -> None:
    config = load_config(EXAMPLES / name)
    assert config.people.dsp.email.endswith("@example.org")


@pytest.mark.parametrize("name", ["example-local.toml", "example-m365.toml"])
def test_every_key_commented_out_in_the_examples_exists(name: str) -> None:
    """Uncommenting an optional line (`# link = …`, `# [report]`) gives a valid config."""
    optional = re.compile(r"^# ?(\[[\w.]+\]|[a-z_]+ = .*)$")
    text = (EXAMPLES / name).read_text()
    lines = [(m[1] if (m := optional.match(line)) else line) for line in text.splitlines()]
    assert lines != text.splitlines(), "nothing optional was found to uncomment"
    config = parse_config(tomllib.loads("\n".join(lines)), source=EXAMPLES / name)
    assert config.report.recipients == ["Executive Director", "dsp@example.org"]


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    config = parse_config(
        merge(BASE_CONFIG, {"register": {"workbook": {"backend": "xlsx", "path": "wb/r.xlsx"}}}),
        source=tmp_path / "config.toml",
    )
    assert config.register.workbook.path == tmp_path / "wb" / "r.xlsx"  # type: ignore[union-attr]
    assert config.state.path == tmp_path / "state"


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"organisation": {"colour": "red"}}, "organisation.colour", "unknown key"),
        ({"register": {"alert_detail": "everything"}}, "register.alert_detail", "summary"),
        ({"people": {"dsp": {"email": "not-an-address"}}}, "people.dsp.email", "not an e-mail"),
        (
            {"organisation": {"timezone": "Mars/Olympus"}},
            "organisation.timezone",
            "unknown time zone",
        ),
        ({"intake": {"mailbox": {"backend": "pigeon"}}}, "intake.mailbox", "pigeon"),
        ({"intake": {"mailbox": {"backend": "folder"}}}, "intake.mailbox.path", "missing"),
        ({"roles": {"Executive Director": ["nobody"]}}, "roles", "Executive Director"),
        ({"schedule": {"poll_seconds": 1}}, "schedule.poll_seconds", "greater than or equal"),
        ({"organisation": {"domains": ["staff@example.org"]}}, "organisation.domains", "domain"),
        ({"organisation": {"domains": "example.org"}}, "organisation.domains", "list"),
        (
            {"intake": {"forms": {"columns": {"shoe_size": "Q"}}}},
            "intake.forms.columns",
            "shoe_size",
        ),
        ({"people": None}, "people", "missing"),
    ],
)
def test_errors_name_the_key_and_the_problem(changes: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(merge(BASE_CONFIG, changes))
    message = str(caught.value)
    assert message.startswith(f"{key}") and words in message, message


def test_missing_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[organisation\nname = 'x'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_secrets_come_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREVENT_TEST_SECRET", raising=False)
    with pytest.raises(
        ConfigError, match=r"m365\.client_secret_env: environment variable PREVENT_TEST_SECRET"
    ):
        secret_from_env("PREVENT_TEST_SECRET", key="m365.client_secret_env")
    monkeypatch.setenv("PREVENT_TEST_SECRET", "s3cret-value")
    assert secret_from_env("PREVENT_TEST_SECRET", key="k") == "s3cret-value"


def test_role_lookup_ignores_case_and_spacing() -> None:
    config = parse_config(BASE_CONFIG)
    assert config.role_addresses("executive  director") == ["executive.director@example.org"]
    assert config.role_addresses("Chief Wizard") == []


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"schedule": {"pol_seconds": 30}}, "schedule.pol_seconds", "did you mean 'poll_seconds'"),
        (
            {"register": {"workbook": {"backend": "xlsx", "path": "r.xlsx", "pth": "x"}}},
            "register.workbook.pth",
            "did you mean 'path'",
        ),
        ({"areas": {"Warwickshire": {"contact": []}}}, "areas.Warwickshire.contact", "'contacts'"),
        ({"roles": {"Safeguarding Lead": "lead@example.org"}}, "roles.Safeguarding Lead", "["),
    ],
)
def test_a_misspelt_key_or_a_missing_list_says_what_to_write(
    changes: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(merge(BASE_CONFIG, changes))
    message = str(caught.value)
    assert message.startswith(key) and words in message, message


def test_notepads_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (EXAMPLES / "example-local.toml").read_bytes())
    assert load_config(path).people.dsp.email.endswith("@example.org")


def test_an_empty_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"config\.toml: the file is empty"):
        load_config(path)


def test_a_windows_path_in_double_quotes_names_the_line_and_says_what_to_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    text = (EXAMPLES / "example-local.toml").read_text()
    line = next(
        n
        for n, t in enumerate(text.splitlines(), 1)
        if t.startswith("workbook =") and "register" in t
    )
    path.write_text(text.replace("workbooks/concern-register.xlsx", r"C:\Users\dsp\register.xlsx"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message and f"line {line}" in message, message
    assert "forward slashes" in message and "single quotes" in message, message


def test_an_address_with_a_trailing_newline_is_not_an_address() -> None:
    from service.config import EMAIL_RE

    assert EMAIL_RE.match("dsp@example.org")
    # "$" would match before the newline; a cell typed with Alt+Enter must not become a header
    assert not EMAIL_RE.match("dsp@example.org\n")


def test_organisation_domains_tell_staff_from_external_senders() -> None:
    config = parse_config(
        merge(BASE_CONFIG, {"organisation": {"domains": ["Example.ORG", "@college.example.net"]}}),
        source=Path("config.toml"),
    )
    org = config.organisation
    assert org.domains == ["example.org", "college.example.net"]
    assert org.is_internal("tutor@example.org")
    assert org.is_internal("Tutor@Leamington.Example.org")  # a subdomain is the organisation's
    assert org.is_internal("a@college.example.net")
    assert not org.is_internal("a@notexample.org")  # a suffix that is not a subdomain
    assert not org.is_internal("a@example.org.evil.test")
    assert not org.is_internal("not an address")
