"""A flag of the learned layer reaches the alert and the register as the rules' do: a summary
alert names the indicator and never quotes the words, a full alert and the register say which
words weighed most. The rules are muted here so that only the model can speak.

Texts are invented and deliberately not taken from bench/triage/ (the evaluation set).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service import indicators
from service.app import App
from service.intake import pipeline
from service.triage.engine import load_knowledge
from service.triage.learned import LEARNED_CRITICAL
from tests.conftest import Clock
from tests.service.intake.test_pipeline import alerts, deliver, mail, register_rows
from tests.service.intake.test_triage_alerts import full_detail_app

# Written for this test, in no labelled file.
WORDING = (
    "Since the summer Corey calls the men who fight for the caliphate his brothers, says "
    "the unbelievers deserve what is coming and he is saving to get out there to join them."
)
WORDS = ("caliphate", "brothers", "unbelievers", "Corey", "join them")


@pytest.fixture
def rules_muted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A knowledge file with no rules for the matcher; the model keeps the shipped one."""
    path = tmp_path / "knowledge.toml"
    path.write_text("[sources]\n", encoding="utf-8")
    empty = load_knowledge(path)
    monkeypatch.setattr(indicators, "_knowledge", lambda: empty)
    assert not indicators.assess(WORDING, learned=False).suggestions


def test_a_summary_alert_names_the_model_s_flag_and_quotes_no_words(
    memory_app: App, rules_muted: None
) -> None:
    deliver(memory_app, mail(WORDING))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert alert.high_importance and "URGENT" in alert.subject
    for body in (alert.text, alert.html):
        assert LEARNED_CRITICAL.label in body
        assert "weighed most" not in body and "→" not in body
        for word in WORDS:
            assert word not in body, word
    [row] = register_rows(memory_app)
    cell = row["Risk indicators"]
    assert "Suggested from: the wording (words that weighed most: '" in cell
    assert f"→ {LEARNED_CRITICAL.label}" in cell
    assert row["Critical risk factor"] == "Suggested – please check"


def test_a_full_alert_says_which_words_weighed_most(
    make_config: Callable[..., Any], clock: Clock, rules_muted: None
) -> None:
    app = full_detail_app(make_config, clock)
    deliver(app, mail(WORDING))
    pipeline.poll(app)
    [alert] = alerts(app)
    assert "the wording (words that weighed most: '" in alert.text
    assert f"→ {LEARNED_CRITICAL.label}" in alert.text
    assert "the wording (words that weighed most: &#39;" in alert.html  # autoescaped
    app.close()
