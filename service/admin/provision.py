"""``prevent-service provision``: make what the config points at, then check it.

For Microsoft 365 this is the step after the app registration and the grants: the folders and
the register and compliance workbooks at their SharePoint paths, and the Processed and
Quarantine folders in the shared mailbox. Workbooks are laid out from the same table specs as
``init``'s local ones. Nothing that exists is changed: an existing file is left alone byte for
byte, whatever it holds (``check`` then says whether its tables are usable).

The Forms responses workbook is not made: Microsoft Forms creates it (``Open results in Excel``)
with the form's own columns; ``check`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from connectors.base import (
    CheckResult,
    ProvisionableMailbox,
    ProvisionableWorkbook,
    TableSpec,
)
from service.app import App
from service.cases.register import register_table_spec
from service.errors import PreventServiceError


def run_provision(app: App) -> list[CheckResult]:
    results: list[CheckResult] = []
    results += _mailbox(app)
    results += _workbook(app, "register", [register_table_spec(app.config.register.table)])
    if app.config.compliance is not None:
        from service.compliance.workbook import compliance_table_specs

        specs = compliance_table_specs(
            demo=False, today=app.local_now().date(), cfg=app.config.compliance
        )
        results += _workbook(app, "compliance", specs)
    if app.config.intake.forms is not None:
        results.append(
            CheckResult(
                "forms workbook",
                True,
                "not made here: Microsoft Forms creates it (Open results in Excel); check reads it",
            )
        )
    return results


def _mailbox(app: App) -> Iterable[CheckResult]:
    try:
        mailbox = app.mailbox()
    except PreventServiceError as exc:
        return [CheckResult("mailbox", False, str(exc))]
    if mailbox is None:
        return []
    if not isinstance(mailbox, ProvisionableMailbox):
        return [
            CheckResult(
                "mailbox",
                True,
                f"{type(mailbox).__name__}: nothing to make here (check makes its folders)",
            )
        ]
    return _lines("mailbox", mailbox.provision)


def _workbook(app: App, role: str, specs: list[TableSpec]) -> Iterable[CheckResult]:
    try:
        workbook = app.workbook(role)
    except PreventServiceError as exc:
        return [CheckResult(f"{role} workbook", False, str(exc))]
    if not isinstance(workbook, ProvisionableWorkbook):
        return [
            CheckResult(
                f"{role} workbook", True, f"{type(workbook).__name__}: nothing to make here"
            )
        ]
    return _lines(f"{role} workbook", lambda: workbook.provision(specs))


def _lines(name: str, make: Callable[[], Iterable[CheckResult]]) -> list[CheckResult]:
    try:
        return list(make())
    except PreventServiceError as exc:
        return [CheckResult(name, False, str(exc))]
