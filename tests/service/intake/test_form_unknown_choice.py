"""A form answer that is none of the form's known options is shown as given, marked as such,
not as "None matched"; a long typed answer stays in the register (a summary alert holds no
learner detail)."""

from __future__ import annotations

from service.app import App
from service.intake import pipeline
from tests.service.intake.test_pipeline import add_forms, alerts, form_row


def test_an_unknown_choice_is_shown_as_answered_in_both_parts(memory_app: App) -> None:
    typed = "Robin Example said " + "something worrying about a family member " * 3
    add_forms(
        memory_app,
        [
            form_row(
                1, account="See the answers.", indicators=f"Online radical forums (new);{typed};"
            )
        ],
    )

    assert pipeline.poll(memory_app).done == 1

    [alert] = alerts(memory_app)
    html = alert.html or ""
    for part in (alert.text, html):
        assert "None matched" not in part
        assert "None from the form&#39;s known options" in part or (
            "None from the form's known options" in part
        )
        assert (
            "“Online radical forums (new)” (as answered on the form: not one of its known" in part
        )
        assert "1 longer answer typed on the form" in part
        assert "Robin" not in part
