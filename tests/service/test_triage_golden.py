"""The matcher's speed work changed no verdict and no explanation: every labelled narrative
(bench/triage/tuning*.toml, heldout.toml, heldout2.toml) and a few long synthetic bodies give
exactly the rules' result recorded in triage_golden.json (suggestions with their matched words
and rule, danger signs). A deliberate change to the rules or knowledge file re-records it:
``PYTHONPATH=. .venv/bin/python tests/service/triage_golden.py``, and the diff is reviewed."""

from __future__ import annotations

import json

import pytest

from tests.service import triage_golden as golden

RECORDED = json.loads(golden.FIXTURE.read_text(encoding="utf-8"))


def test_fixture_covers_every_allowed_case_and_never_heldout5() -> None:
    keys = {key for key, _ in golden.cases()}
    assert set(RECORDED["cases"]) == keys
    assert not any(k.startswith("heldout5") for k in keys)
    assert {k.split(":")[0] for k in keys} >= {"tuning.toml", "heldout.toml", "heldout2.toml"}


def test_every_labelled_narrative_gives_the_recorded_result() -> None:
    changed = {
        key: (RECORDED["cases"][key], now)
        for key, text in golden.cases()
        if (now := golden.rules_result(text)) != RECORDED["cases"][key]
    }
    assert not changed, f"{len(changed)} cases changed, e.g. {next(iter(changed.items()))}"


@pytest.mark.parametrize("name", sorted(golden.long_bodies()))
def test_long_bodies_give_the_recorded_result(name: str) -> None:
    assert golden.rules_result(golden.long_bodies()[name]) == RECORDED["long"][name]
