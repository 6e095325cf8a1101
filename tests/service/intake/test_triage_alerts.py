"""Suggestions from the wording reach the alert and the register, explained, and only as far
as alert_detail allows: summary alerts name the indicator, never the words that suggested it.

Texts are invented and deliberately not taken from bench/triage/ (the evaluation set).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from service.app import App
from service.cases.register import register_table_spec
from service.intake import pipeline
from tests.conftest import Clock
from tests.service.intake.test_pipeline import (
    add_forms,
    alerts,
    deliver,
    form_row,
    mail,
    register_rows,
)

GLORIFYING = "Casey told the group the gunman who attacked the synagogue was a true hero."
PHRASE = "gunman who attacked the synagogue was a true hero"
LABEL = "Voicing support for extremist causes or leaders"


def full_detail_app(make_config: Callable[..., Any], clock: Clock) -> App:
    config = make_config(register={"alert_detail": "full"}, intake={"forms": None})
    register = MemoryWorkbook()
    register.add_table("Concerns", [c.header for c in register_table_spec().columns], [])
    return App(
        config,
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": register},
    )


def test_summary_alert_names_the_indicator_but_never_quotes_the_words(memory_app: App) -> None:
    deliver(memory_app, mail(GLORIFYING))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert alert.high_importance and "URGENT" in alert.subject
    for body in (alert.text, alert.html):
        assert LABEL in body  # what was suggested, by name
        assert "hero" not in body and "synagogue" not in body and "Casey" not in body
        assert "→" not in body
    [row] = register_rows(memory_app)
    # The register holds the account already, so it may say which words suggested what.
    assert f"'{PHRASE}' → {LABEL}" in row["Risk indicators"]
    assert row["Critical risk factor"] == "Suggested – please check"


def test_full_alert_quotes_the_words_that_suggested_each_indicator(
    make_config: Callable[..., Any], clock: Clock
) -> None:
    app = full_detail_app(make_config, clock)
    deliver(app, mail(GLORIFYING))
    pipeline.poll(app)
    [alert] = alerts(app)
    assert f"'{PHRASE}' → {LABEL}" in alert.text
    assert f"&#39;{PHRASE}&#39; → {LABEL}" in alert.html  # autoescaped
    app.close()


def test_immediate_danger_in_the_words_makes_the_alert_urgent(memory_app: App) -> None:
    deliver(
        memory_app,
        mail("Sam says he has a knife with him and will stab Jo after registration today."),
    )
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert alert.high_importance
    assert "immediate danger" in alert.text and "knife" not in alert.text
    [row] = register_rows(memory_app)
    assert row["Critical risk factor"].startswith(
        "Suggested – the wording suggests immediate danger"
    )
    assert "→ someone may be in immediate danger" in row["Risk indicators"]


def test_an_ordinary_worry_stays_ordinary(memory_app: App) -> None:
    deliver(memory_app, mail("Jo has been late every day this week and seems tired and low."))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert not alert.high_importance and "Suggested indicators" not in alert.text


def test_a_critical_phrase_typed_in_a_form_account_makes_the_alert_urgent(
    memory_app: App,
) -> None:
    add_forms(
        memory_app,
        [
            form_row(
                1,
                person_of_concern="Robin Vale",
                account="Robin keeps saying blowing up the council offices is the only answer.",
                indicators="Personal crisis;",
            )
        ],
    )
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert alert.high_importance and "Robin" not in alert.text
    assert "Justifying the use of violence to solve societal issues" in alert.text
    assert "council offices" not in alert.text
    [row] = register_rows(memory_app)
    cell = row["Risk indicators"]
    assert cell.startswith("Reported: Vulnerability — Personal crisis")
    assert (
        "Suggested from the answers' wording (the DSP decides): More critical risk factors" in cell
    )
    assert "→ Justifying the use of violence" in cell
    assert row["Critical risk factor"] == "Suggested – please check"


def test_a_form_answer_without_concerning_words_adds_nothing(memory_app: App) -> None:
    add_forms(memory_app, [form_row(1, account="Robin missed the bus twice.", indicators="")])
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert not alert.high_importance
    [row] = register_rows(memory_app)
    assert "Suggested" not in row["Risk indicators"]


# The learned layer reading the wording as a whole overrules a rule's critical flag where it
# finds the text clearly ordinary (a lesson, the news): a model that finds everything ordinary
# (no weights, a very low bias) with its veto at 0.5 shows the mechanism without depending on
# the shipped weights.
LESSON_LENGTH = (
    "In Tuesday's citizenship lesson on how the papers report attacks, Casey read aloud a "
    "headline saying the gunman who attacked the synagogue was a true hero to some online."
)


def _everything_ordinary(monkeypatch: Any) -> None:
    from service.triage import learned

    quiet = learned._Linear(bias=-20.0, threshold=0.5, weights={}, veto=0.5)
    monkeypatch.setattr(learned, "model", lambda: learned.LearnedModel(quiet, quiet, {}))


def test_a_rule_flag_the_model_reads_as_ordinary_is_shown_but_not_urgent(
    memory_app: App, monkeypatch: Any
) -> None:
    _everything_ordinary(monkeypatch)
    deliver(memory_app, mail(LESSON_LENGTH))
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert not alert.high_importance and "URGENT" not in alert.subject
    for body in (alert.text, alert.html):
        assert "Named, not urgent" in body and LABEL in body  # the DSP still sees it, by name
        assert "synagogue" not in body and "→" not in body  # a summary alert never quotes
    [row] = register_rows(memory_app)
    assert row["Critical risk factor"].startswith("No – one was named")
    assert "Named, but not marked urgent" in row["Risk indicators"]
    assert f"'{PHRASE}' → {LABEL}" in row["Risk indicators"]


def test_a_short_text_is_too_short_to_overrule_a_rule(memory_app: App, monkeypatch: Any) -> None:
    _everything_ordinary(monkeypatch)
    deliver(memory_app, mail(GLORIFYING))  # twelve words: too little context to call ordinary
    pipeline.poll(memory_app)
    [alert] = alerts(memory_app)
    assert alert.high_importance and "URGENT" in alert.subject
    assert "Named, not urgent" not in alert.text
