"""The credential rules the IMAP mailbox and the SMTP sender share (connectors/mail_auth.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.mail_auth import credentials_from_config, xoauth2_string
from service.config import parse_config
from service.errors import ConfigError
from tests.conftest import BASE_CONFIG, merge


def config_with(tmp_path: Path, imap: dict[str, Any], smtp: dict[str, Any]) -> Any:
    data = merge(
        BASE_CONFIG,
        {
            "intake": {"mailbox": {"backend": "imap", "host": "127.0.0.1", **imap}},
            "sending": {"sender": {"backend": "smtp", "host": "127.0.0.1", **smtp}},
            "state": {"path": str(tmp_path)},
        },
    )
    return parse_config(data, source=tmp_path / "config.toml")


def test_a_password_from_the_environment_for_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREVENT_TEST_MAIL_PASSWORD", "not-a-real-password")
    auth = {"username": "intake@example.org", "password_env": "PREVENT_TEST_MAIL_PASSWORD"}
    config = config_with(tmp_path, auth, auth)

    for section, key in (
        (config.intake.mailbox, "intake.mailbox"),
        (config.sending.sender, "sending.sender"),
    ):
        got = credentials_from_config(section, config, key=key)
        assert got.password == "not-a-real-password" and got.token_provider is None
        assert got.hint == "the password in $PREVENT_TEST_MAIL_PASSWORD"


def test_smtp_without_username_sends_without_auth(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"username": "intake@example.org"}, {})

    got = credentials_from_config(
        config.sending.sender, config, key="sending.sender", username_optional=True
    )

    assert (got.password, got.token_provider) == (None, None)
    with pytest.raises(ConfigError, match=r"intake\.mailbox\.password_env: set password_env"):
        credentials_from_config(config.intake.mailbox, config, key="intake.mailbox")


def test_oauth2_without_m365_names_the_section_key(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"username": "a@example.org", "oauth2": True}, {})

    with pytest.raises(ConfigError, match=r"intake\.mailbox\.oauth2: .*no \[m365\] section"):
        credentials_from_config(config.intake.mailbox, config, key="intake.mailbox")


def test_xoauth2_string_is_the_documented_form() -> None:
    assert xoauth2_string("a@example.org", "tok") == "user=a@example.org\x01auth=Bearer tok\x01\x01"
