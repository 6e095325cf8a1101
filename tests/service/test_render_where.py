"""Mail that tells someone to open a workbook says where it is, even with no link configured.

``register.link`` and ``compliance.workbook_link`` are optional (and unset in the local
default): "open the register" alone left the DSP hunting for the file. Without a link, each
message names the file (local) or the file and SharePoint site (Microsoft 365).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.memory import MemoryMailbox, MemorySender, MemoryWorkbook
from service.app import App
from service.cases.register import register_table_spec
from service.config import Config
from service.intake import pipeline
from service.render import workbook_where
from tests.conftest import Clock
from tests.service.intake.test_pipeline import alerts, deliver, mail

LOCAL = {"backend": "xlsx", "path": "workbooks/concern-register.xlsx"}
SHAREPOINT = {
    "backend": "graph",
    "site_host": "example.sharepoint.com",
    "site_path": "/sites/Safeguarding",
    "path": "/Registers/Concern register.xlsx",
}


def register_app(make_config: Callable[..., Config], clock: Clock, **register: Any) -> App:
    """Memory backends in use, but the register's config as given (what the mail describes)."""
    config = make_config(register=register, intake={"forms": None})
    workbook = MemoryWorkbook()
    workbook.add_table("Concerns", [c.header for c in register_table_spec().columns], [])
    return App(
        config,
        now=clock,
        mailbox=MemoryMailbox(),
        sender=MemorySender(),
        workbooks={"register": workbook},
    )


def test_a_local_register_is_named_by_its_path_in_both_parts(
    make_config: Callable[..., Config], clock: Clock, tmp_path: Path
) -> None:
    app = register_app(make_config, clock, workbook=LOCAL)
    deliver(app, mail())
    pipeline.poll(app)
    [alert] = alerts(app)
    where = str(tmp_path / "workbooks" / "concern-register.xlsx")
    assert f"open the register ({where}) to read the account" in alert.text
    assert f"open the register ({where}) to read the account" in alert.html
    app.close()


def test_a_configured_link_wins_over_the_location(
    make_config: Callable[..., Config], clock: Clock
) -> None:
    link = "https://example.sharepoint.com/sites/Safeguarding/Registers"
    app = register_app(make_config, clock, workbook=SHAREPOINT, link=link)
    deliver(app, mail())
    pipeline.poll(app)
    [alert] = alerts(app)
    assert f"open the register ({link})" in alert.text
    assert f'<a href="{link}">concern register</a>' in alert.html
    assert "on the SharePoint site" not in alert.text + alert.html
    app.close()


def test_a_sharepoint_register_without_a_link_names_the_file_and_site() -> None:
    from service.config import GraphWorkbookConfig

    where = workbook_where(GraphWorkbookConfig.model_validate(SHAREPOINT))
    assert where == (
        "Registers/Concern register.xlsx on the SharePoint site "
        "https://example.sharepoint.com/sites/Safeguarding"
    )


@pytest.mark.parametrize("template", ["escalation", "weekly_digest", "followup_alert"])
def test_every_mail_that_sends_the_dsp_to_the_register_says_where_it_is(
    make_config: Callable[..., Config], clock: Clock, tmp_path: Path, template: str
) -> None:
    from service.cases import escalation

    app = register_app(make_config, clock, workbook=LOCAL)
    deliver(app, mail(message_id="<first@example.org>"))
    pipeline.poll(app)
    if template == "escalation":
        clock.advance(hours=5)
        escalation.check(app)
    elif template == "weekly_digest":
        escalation.weekly_digest(app)
    else:
        [ack] = [m for m in app.sender().sent if "has been received" in m.subject]  # type: ignore[attr-defined]
        deliver(
            app,
            mail(
                "More: the learner missed two sessions.",
                subject=f"RE: {ack.subject}",
                message_id="<second@example.org>",
            ),
        )
        pipeline.poll(app)
    sent = app.sender().sent  # type: ignore[attr-defined]
    kind = {"escalation": "escalation", "weekly_digest": "weekly-digest"}.get(template)
    [message] = [m for m in sent if m.message_id.startswith(f"<{kind or 'followup-alert'}.")]
    where = str(tmp_path / "workbooks" / "concern-register.xlsx")
    assert where in message.text and where in message.html
    app.close()


def test_the_plan_digest_names_a_local_compliance_workbook(tmp_path: Path) -> None:
    from service.config import XlsxWorkbookConfig

    where = workbook_where(XlsxWorkbookConfig(backend="xlsx", path=tmp_path / "compliance.xlsx"))
    assert where == str(tmp_path / "compliance.xlsx")
    assert workbook_where(None) == ""


def test_check_says_whether_alerts_can_link_to_the_register(
    make_config: Callable[..., Config], clock: Clock, tmp_path: Path
) -> None:
    from service.admin.checks import _register_link

    app = register_app(make_config, clock, workbook=LOCAL)
    line = _register_link(app)
    assert line.ok and line.name == "register.link"
    assert line.detail.startswith(
        f"not set: alerts name {tmp_path / 'workbooks' / 'concern-register.xlsx'} but cannot "
        "link to it; set register.link"
    )
    app.close()
    link = "https://example.sharepoint.com/sites/Safeguarding/Registers"
    app = register_app(make_config, clock, workbook=SHAREPOINT, link=link)
    assert _register_link(app).detail == f"alerts link to {link}"
    app.close()
