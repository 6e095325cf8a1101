"""External senders: always logged and alerted, marked as external, acknowledged sparingly."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from service.app import App
from service.cases.register import register_table_spec
from service.config import Config
from service.intake import pipeline
from service.ledger import ItemState
from tests.conftest import Clock
from tests.service.intake.test_pipeline import acks, alerts, deliver, mail, register_rows

SPAM = "Spammer <victim@othercompany.test>"


def app_with(config: Config, clock: Clock) -> App:
    register = MemoryWorkbook()
    spec = register_table_spec()
    register.add_table(spec.table, [c.header for c in spec.columns], [])
    return App(
        config,
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": register},
    )


@pytest.fixture
def app(make_config: Callable[..., Config], clock: Clock) -> Iterator[App]:
    made = app_with(make_config({"organisation": {"domains": ["example.org"]}}), clock)
    yield made
    made.close()


def test_external_senders_are_all_logged_and_alerted_but_acknowledged_once_a_day(
    app: App, clock: Clock
) -> None:
    for n in range(3):
        deliver(app, mail(f"Spam run {n}", sender=SPAM, message_id=f"<spam{n}@othercompany.test>"))
    result = pipeline.poll(app)

    assert (result.alerts, result.logged, result.done, result.pending) == (3, 3, 3, 0)
    assert len(register_rows(app)) == 3
    assert [m.to for m in acks(app)] == [("victim@othercompany.test",)]
    assert app.ledger.counts_by_state() == {ItemState.DONE: 3}
    for alert in alerts(app):
        assert "EXTERNAL SENDER" in alert.text
        assert "<strong>External sender</strong> – outside the organisation" in alert.html
        # In the subject too: a DSP scanning the inbox sees it before opening the alert.
        assert alert.subject.endswith(" (external sender)")

    # The next day: one more acknowledgement to that address.
    clock.advance(days=1)
    deliver(app, mail("Spam again", sender=SPAM, message_id="<spam9@othercompany.test>"))
    pipeline.poll(app)
    assert len(acks(app)) == 2
    # The ledger keeps a hash of the address, never the address.
    rows = app.ledger.db.execute("SELECT key, value FROM kv").fetchall()
    assert not [r for r in rows if "othercompany" in f"{r[0]} {r[1]}"]


def test_staff_are_acknowledged_every_time_and_not_marked(app: App) -> None:
    for n in range(2):
        deliver(
            app,
            mail(
                f"Worry {n}", sender="Tutor <tutor@leamington.example.org>", message_id=f"<t{n}@x>"
            ),
        )
    pipeline.poll(app)
    assert len(acks(app)) == 2
    for alert in alerts(app):
        assert "EXTERNAL" not in alert.text and "External sender" not in alert.html
        assert "external" not in alert.subject


def test_acknowledgements_to_external_senders_can_be_turned_off(
    make_config: Callable[..., Config], clock: Clock
) -> None:
    config = make_config(
        {"organisation": {"domains": ["example.org"]}, "intake": {"acknowledge_external": False}}
    )
    app = app_with(config, clock)
    try:
        deliver(app, mail("From a parent", sender="Parent <parent@home.test>", message_id="<p1@x>"))
        deliver(app, mail("From staff", sender="Tutor <tutor@example.org>", message_id="<s1@x>"))
        result = pipeline.poll(app)
        assert (result.alerts, result.done) == (2, 2)
        assert [m.to for m in acks(app)] == [("tutor@example.org",)]
    finally:
        app.close()


def test_without_domains_the_configs_own_domains_are_internal_but_not_public_mail(
    make_config: Callable[..., Config],
) -> None:
    config = make_config(
        {
            "people": {"admin_email": "it@trainingco.org.uk"},
            "roles": {"All staff": ["all@staff.trainingco.org.uk", "volunteer@gmail.com"]},
        }
    )
    organisation = config.organisation
    assert organisation._domains_derived
    assert "trainingco.org.uk" in organisation.domains and "example.org" in organisation.domains
    assert organisation.is_internal("someone@staff.trainingco.org.uk")
    assert not organisation.is_internal("stranger@gmail.com")
    assert "gmail.com" not in organisation.domains
