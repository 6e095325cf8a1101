"""`check` must not pass a config still holding example addresses, hosts or ids."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from service.admin.placeholders import is_placeholder_host, placeholder_keys
from service.config import parse_config

ROOT = Path(__file__).resolve().parents[3]


def keys_of(name: str) -> dict[str, str]:
    data = tomllib.loads((ROOT / "config" / name).read_text(encoding="utf-8"))
    return dict(placeholder_keys(parse_config(data, source=ROOT / "config" / name)))


def test_the_m365_example_names_its_placeholder_ids_hosts_and_addresses() -> None:
    found = keys_of("example-m365.toml")
    for key in (
        "m365.tenant_id",
        "m365.client_id",
        "people.dsp.email",
        "intake.address",
        "intake.mailbox.address",
        "sending.sender.address",
        "register.workbook.site_host",
        "register.link",
        "organisation.domains[0]",
    ):
        assert key in found, (key, sorted(found))
    assert "placeholder id" in found["m365.tenant_id"]


def test_the_local_example_names_every_address_by_its_key() -> None:
    found = keys_of("example-local.toml")
    assert 'roles."All staff"[0]' in found
    assert "areas.Coventry.contacts[0].email" in found
    assert found["people.admin_email"] == "'it-admin@example.org' is a placeholder address"


@pytest.mark.parametrize(
    ("host", "placeholder"),
    [
        ("example.org", True),
        ("mail.example.com", True),
        ("school.test", True),
        ("contoso.sharepoint.com", True),
        ("example.sharepoint.com", True),
        ("nobody.invalid", True),
        ("trainingco.org.uk", False),
        ("examples-training.co.uk", False),
        ("trainingco.sharepoint.com", False),
    ],
)
def test_placeholder_hosts(host: str, placeholder: bool) -> None:
    assert is_placeholder_host(host) is placeholder


def test_a_real_config_has_none() -> None:
    text = (ROOT / "config" / "example-m365.toml").read_text(encoding="utf-8")
    real = (
        text.replace("example.org", "trainingco.org.uk")
        .replace("example.sharepoint.com", "trainingco.sharepoint.com")
        .replace("00000000-0000-0000-0000-000000000000", "3f2a9c1e-6b7d-4e8f-9a0b-1c2d3e4f5a6b")
        .replace("11111111-1111-1111-1111-111111111111", "8d7c6b5a-4e3f-4a1b-8c9d-0e1f2a3b4c5d")
        .replace("(placeholder)", "")
    )
    config = parse_config(tomllib.loads(real), source=ROOT / "config" / "example-m365.toml")
    assert placeholder_keys(config) == []
