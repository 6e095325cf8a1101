"""``prevent-service check``: try each capability the service needs, one line each.

A backend may offer its own ``checks()`` (token, permissions, folders, site and file on
Microsoft 365); this module adds what the domain needs of the workbooks (tables and columns).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable

from connectors.base import CheckResult
from service.app import App
from service.cases import register
from service.errors import PreventServiceError
from service.intake.forms import column_map
from service.render import workbook_where


def run_checks(app: App, *, send_test: bool = False) -> list[CheckResult]:
    backend_checked: set[str] = set()  # a workbook's own lines once, not once per table
    results = [CheckResult("config", True, str(app.config.source or "loaded"))]
    results.append(CheckResult("ledger", True, str(app.ledger.path)))

    mailbox = _attempt(results, "mailbox", app.mailbox)
    if mailbox is not None:
        results += _backend_checks("mailbox", mailbox)
    sender = _attempt(results, "sender", app.sender)
    if sender is not None:
        if hasattr(sender, "checks"):
            # A sender that can test itself sends the test message its own way.
            to = app.config.people.admin_email if send_test else None
            results += _backend_checks("sender", sender, send_test_to=to)
        else:
            results += _backend_checks("sender", sender)
            if send_test:
                results.append(_send_test(app))

    results += _workbook_checks(
        app, "register", app.config.register.table, _register_columns, backend_checked
    )
    forms = app.config.intake.forms
    if forms is not None:

        def forms_columns(headers: tuple[str, ...]) -> str | None:
            from connectors.base import Table

            column_map(Table(forms.table, headers, ()), forms.columns, where="forms workbook")
            return None

        results += _workbook_checks(app, "forms", forms.table, forms_columns, backend_checked)
    if app.config.compliance is not None:
        from service.compliance.workbook import compliance_table_specs

        for spec in compliance_table_specs(demo=False, today=app.local_now().date()):
            results += _workbook_checks(app, "compliance", spec.table, None, backend_checked)
    results += _config_roles(app)
    results += _placeholders(app)
    results.append(_domains(app))
    results.append(_register_link(app))
    results.append(_report_folder(app))
    return results


def _config_roles(app: App) -> list[CheckResult]:
    """A role the config names but [roles] lacks sends its mail to the admin instead: say so."""
    compliance = app.config.compliance
    if compliance is None:
        return []
    results = []
    for key, role in (
        ("compliance.plan_owner", compliance.plan_owner),
        ("compliance.escalate_to_role", compliance.escalate_to_role),
    ):
        if role and not app.config.role_addresses(role):
            results.append(
                CheckResult(
                    key, False, f"{role!r} is not in [roles]; its mail goes to the admin instead"
                )
            )
    return results


def _placeholders(app: App) -> list[CheckResult]:
    """Each example address, host or id still in the config, by key (a demo excepted)."""
    from service.admin.placeholders import placeholder_keys

    found = placeholder_keys(app.config)
    if not found:
        return [CheckResult("placeholders", True, "no example addresses or ids left")]
    if app.config.demo:
        return [
            CheckResult(
                "placeholders",
                True,
                f"{len(found)} example value(s) allowed: demo = true (an 'init --demo' folder; "
                "remove that line for real use)",
            )
        ]
    return [CheckResult(key, False, f"{why}: replace it with your own") for key, why in found]


def _register_link(app: App) -> CheckResult:
    """What the DSP's alerts point at: a link, or (unset) the register's location in words."""
    link = app.config.register.link
    if link:
        return CheckResult("register.link", True, f"alerts link to {link}")
    where = workbook_where(app.config.register.workbook) or "the register"
    return CheckResult(
        "register.link",
        True,
        f"not set: alerts name {where} but cannot link to it; set register.link to the "
        "address the DSP opens the register at (a SharePoint or file-share link) so an alert "
        "opens it",
    )


def _domains(app: App) -> CheckResult:
    """Which senders count as staff; everyone else is external (marked, acks limited)."""
    organisation = app.config.organisation
    acks = (
        "acknowledged at most once a day per address"
        if app.config.intake.acknowledge_external
        else "not acknowledged (intake.acknowledge_external = false)"
    )
    domains = ", ".join(organisation.domains)
    if not organisation._domains_derived:
        return CheckResult("organisation.domains", True, f"{domains}; other senders {acks}")
    if not organisation.domains:
        return CheckResult(
            "organisation.domains",
            False,
            "not set, and no address in the config gives one (public mail providers do not "
            f"count): every reporter counts as external and is {acks}; set it",
        )
    return CheckResult(
        "organisation.domains",
        True,
        f"not set: taken as {domains} (from intake.address, people and roles); other senders "
        f"{acks}; set it to be sure",
    )


def _report_folder(app: App) -> CheckResult:
    """The board report is written here before it is sent: find out now, not on 1 September."""
    folder = app.config.report_folder
    try:
        folder.mkdir(0o700, parents=True, exist_ok=True)  # board reports: the service's user only
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".check-"):
            pass
    except OSError as exc:
        return CheckResult(
            "report folder",
            False,
            f"cannot write to {folder} ({exc.strerror}): set report.folder to a folder the "
            "service may write to",
        )
    return CheckResult("report folder", True, f"{folder} (writable)")


def _attempt(results: list[CheckResult], name: str, make: Callable[[], object]) -> object | None:
    try:
        return make()
    except PreventServiceError as exc:
        results.append(CheckResult(name, False, str(exc)))
        return None


def _backend_checks(name: str, backend: object, **options: object) -> list[CheckResult]:
    checks = getattr(backend, "checks", None)
    if checks is None:
        return [CheckResult(name, True, f"{type(backend).__name__} configured")]
    try:
        return list(checks(**options))
    except PreventServiceError as exc:
        return [CheckResult(name, False, str(exc))]


def _register_columns(headers: tuple[str, ...]) -> str | None:
    present = {h.strip().casefold() for h in headers}
    missing = [
        c.header
        for c in register.REGISTER_COLUMNS
        if c.header.casefold() not in present and c.header not in register.OPTIONAL_COLUMNS
    ]
    if missing:
        return (
            f"missing column(s) {', '.join(missing)}: add them to the table (the service "
            "writes by header name) or start from a register made by 'prevent-service init'"
        )
    return None


def _workbook_checks(
    app: App,
    role: str,
    table: str,
    check_headers: Callable[[tuple[str, ...]], str | None] | None,
    backend_checked: set[str],
) -> Iterable[CheckResult]:
    name = f"{role} table {table}"
    try:
        workbook = app.workbook(role)
    except PreventServiceError as exc:
        return [CheckResult(name, False, str(exc))]
    # The backend's own lines (site, file, mode) once per workbook, not once per table.
    first_table = role not in backend_checked
    backend_checked.add(role)
    results = (
        _backend_checks(f"{role} workbook", workbook)
        if first_table and hasattr(workbook, "checks")
        else []
    )
    try:
        data = workbook.read_table(table)
        problem = check_headers(data.headers) if check_headers else None
    except PreventServiceError as exc:
        return [*results, CheckResult(name, False, str(exc))]
    if problem:
        return [*results, CheckResult(name, False, problem)]
    results.append(CheckResult(name, True, f"readable, {len(data.rows)} row(s)"))
    if role == "register":
        reason = workbook.writable()
        results.append(
            CheckResult(
                f"{role} writable", reason is None, reason or "no lock; appends can go ahead"
            )
        )
    return results


def _send_test(app: App) -> CheckResult:
    stamp = app.now().isoformat(timespec="seconds")
    message = app.compose(
        kind="check",
        key=stamp,
        to=[app.config.people.admin_email],
        subject="[Prevent service] Test message from prevent-service check",
        template="admin_problem",
        context={
            "what": "This is a test",
            "problem": "prevent-service check --send-test sent this message; nothing is wrong.",
            "attempts": 0,
            "at": app.local_now(),
        },
    )
    try:
        app.send(message)
    except PreventServiceError as exc:
        return CheckResult("send test message", False, str(exc))
    return CheckResult("send test message", True, f"sent to {app.config.people.admin_email}")
