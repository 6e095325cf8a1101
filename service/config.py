"""The one TOML config file, validated once at start.

Errors name the key path and what is wrong (``register.path: file not found: …``); unknown keys
are errors. Secrets never live here: the config names the environment variable that holds one.
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import warnings
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from service.errors import ConfigError

EMAIL_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+\Z")  # \Z: no trailing newline
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}\Z)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]\Z"
)


def _check_email(value: str) -> str:
    value = value.strip()
    if not EMAIL_RE.match(value):
        raise ValueError(f"not an e-mail address: {value!r}")
    return value


Email = Annotated[str, Field(min_length=3)]
COURSE_KINDS = ("prevent", "dsp", "induction")  # [compliance] course_links keys


def _check_link(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^\s/]+\S*\Z", value):
        raise ValueError(f"not a web link (https://…): {value!r}")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organisation(Section):
    name: str
    short_name: str = ""
    timezone: str = "Europe/London"
    reference_prefix: str = Field("PRV", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    # The organisation's own mail domains: senders there are staff (trusted to add to a case,
    # acknowledged without limit); anyone else is external. Subdomains count as the domain.
    domains: list[str] = []
    # Set when ``domains`` was left empty and taken from the config's own addresses instead.
    _domains_derived: bool = PrivateAttr(default=False)

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        cleaned = []
        for raw in value:
            domain = raw.strip().lower().removeprefix("@")
            if not _DOMAIN_RE.match(domain):
                raise ValueError(f"{raw!r} is not a mail domain (write it as 'example.org')")
            cleaned.append(domain)
        return cleaned

    def is_internal(self, address: str) -> bool:
        """Whether ``address`` is at one of the organisation's own domains (or a subdomain)."""
        domain = address.rpartition("@")[2].strip().lower().rstrip(".")
        return any(domain == d or domain.endswith("." + d) for d in self.domains)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Person(Section):
    name: str
    email: str

    _email = field_validator("email")(classmethod(lambda cls, v: _check_email(v)))


class People(Section):
    dsp: Person
    deputy_dsp: Person | None = None
    admin_email: str

    _admin = field_validator("admin_email")(classmethod(lambda cls, v: _check_email(v)))

    @property
    def deputy_cc(self) -> list[str]:
        """Who is copied on mail to the DSP: the deputy, if there is one."""
        return [self.deputy_dsp.email] if self.deputy_dsp else []


class Contact(Section):
    name: str
    role: str = ""
    phone: str = ""
    email: str = ""


class Area(Section):
    """Referral contacts shown in alerts for concerns in this area (police Prevent lead, LA)."""

    contacts: list[Contact] = []
    aliases: list[str] = []


class M365(Section):
    tenant_id: str
    client_id: str
    certificate_path: Path | None = None
    certificate_password_env: str | None = None
    certificate_thumbprint: str | None = None
    client_secret_env: str | None = None
    authority_host: str = "login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    ca_bundle: Path | None = None
    timeout_seconds: float = 60.0
    max_retry_wait_seconds: float = 300.0


# Mailbox backends ------------------------------------------------------------------------


class FolderMailboxConfig(Section):
    backend: Literal["folder"]
    path: Path


class MemoryMailboxConfig(Section):
    backend: Literal["memory"]


class ImapMailboxConfig(Section):
    backend: Literal["imap"]
    host: str
    port: int | None = None
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str
    password_env: str | None = None
    oauth2: bool = False  # XOAUTH2 with a token from msal ([m365]) instead of a password
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    ca_bundle: Path | None = None
    timeout_seconds: float = 60.0


class GraphMailboxConfig(Section):
    backend: Literal["graph"]
    address: str
    folder: str = "inbox"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"


MailboxConfig = Annotated[
    FolderMailboxConfig | MemoryMailboxConfig | ImapMailboxConfig | GraphMailboxConfig,
    Field(discriminator="backend"),
]

# Sender backends -------------------------------------------------------------------------


class OutboxSenderConfig(Section):
    backend: Literal["outbox"]
    path: Path


class MemorySenderConfig(Section):
    backend: Literal["memory"]


class SmtpSenderConfig(Section):
    backend: Literal["smtp"]
    host: str
    port: int | None = None
    security: Literal["tls", "starttls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    oauth2: bool = False
    ca_bundle: Path | None = None
    timeout_seconds: float = 60.0


class GraphSenderConfig(Section):
    backend: Literal["graph"]
    address: str  # the shared mailbox the mail goes from (copy kept in its Sent Items)


SenderConfig = Annotated[
    OutboxSenderConfig | MemorySenderConfig | SmtpSenderConfig | GraphSenderConfig,
    Field(discriminator="backend"),
]

# Workbook backends -----------------------------------------------------------------------


class XlsxWorkbookConfig(Section):
    backend: Literal["xlsx"]
    path: Path


class MemoryWorkbookConfig(Section):
    backend: Literal["memory"]


class GraphWorkbookConfig(Section):
    backend: Literal["graph"]
    site_host: str  # contoso.sharepoint.com
    site_path: str  # /sites/Safeguarding
    path: str  # /Registers/Concern register.xlsx (in the site's default library)
    # "workbook": Excel table API in a short session; "file": download, edit, upload with If-Match
    mode: Literal["workbook", "file"] = "workbook"


WorkbookConfig = Annotated[
    XlsxWorkbookConfig | MemoryWorkbookConfig | GraphWorkbookConfig,
    Field(discriminator="backend"),
]

# Sections --------------------------------------------------------------------------------

DEFAULT_FORM_COLUMNS: dict[str, str] = {
    "person_of_concern": "Who are you concerned about? (name)",
    "learner_ref": "Learner reference (if known)",
    "dob_or_age": "Date of birth or age",
    "area": "Centre or area",
    "occurred_at": "When did it happen?",
    "account": "What happened? Please use the person's own words where you can",
    "indicators": "Which of these apply?",
    "immediate_action": "What action have you taken so far?",
    "immediate_danger": "Is anyone in immediate danger?",
    "others_told": "Who else have you told?",
}


class FormsConfig(Section):
    workbook: WorkbookConfig
    table: str = "Table1"
    columns: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_FORM_COLUMNS))
    # Responses with an ID up to this one were handled before the service (a form that
    # already has answers); they are not taken in. 0 takes every response.
    start_after_id: int = Field(0, ge=0)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_FORM_COLUMNS))
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_FORM_COLUMNS)}"
            )
        if "account" not in value:
            raise ValueError("the 'account' field must be mapped to a question")
        return value


class Intake(Section):
    address: str  # the service's own address: sender of its mail, and loop protection
    mailbox: MailboxConfig | None = None
    forms: FormsConfig | None = None
    max_message_bytes: int = 25 * 1024 * 1024
    # Acknowledge reporters outside organisation.domains (an employer, a parent)? At most one
    # a day per address either way: a forged From gets at most that much backscatter.
    acknowledge_external: bool = True

    _address = field_validator("address")(classmethod(lambda cls, v: _check_email(v)))


class Register(Section):
    workbook: WorkbookConfig
    table: str = "Concerns"
    alert_detail: Literal["summary", "full"] = "summary"
    escalate_after_hours: float = Field(4.0, gt=0)
    link: str | None = None  # URL of the register shown in alerts (SharePoint link)
    # How a concern's time still "New" is counted for escalation: "clock" hours, or "working"
    # hours (working_hours on working days: weekends and bank holidays do not count). Critical
    # concerns have their own setting, clock by default: they must not wait for Monday.
    escalate_in: Literal["clock", "working"] = "clock"
    escalate_critical_in: Literal["clock", "working"] = "clock"
    working_hours: str = "09:00-17:00"

    @field_validator("working_hours")
    @classmethod
    def _working_hours(cls, value: str) -> str:
        match = re.fullmatch(r"\s*(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)\s*", value)
        if not match or not all(int(match[i]) < 24 for i in (1, 3)):
            raise ValueError(f"{value!r} is not a time range HH:MM-HH:MM (for example 09:00-17:00)")
        start, end = time(int(match[1]), int(match[2])), time(int(match[3]), int(match[4]))
        if end <= start:
            raise ValueError(f"{value!r}: the end must be after the start")
        return f"{start:%H:%M}-{end:%H:%M}"


class Sending(Section):
    sender: SenderConfig


class Compliance(Section):
    workbook: WorkbookConfig
    plan_owner: str | None = None  # role name from [roles], told about cells not understood
    offsets_days: list[int] = [30, 7, 1, 0]
    overdue_every_days: int = Field(7, ge=1)
    escalate_after_days_overdue: int = Field(14, ge=1)
    escalate_to_role: str = "Executive Director"
    send_time: time = time(8, 0)
    month_due: Literal["last_working_day", "last_day", "first_day"] = "last_working_day"
    training_every_months: int = Field(12, ge=1)
    dsp_training_every_months: int = Field(24, ge=1)
    dsp_roles: list[str] = ["DSP", "Deputy DSP", "Designated Safeguarding Person"]
    induction_within_days: int = Field(28, ge=1)
    training_warn_days: int = Field(30, ge=0)  # training reminders use offsets up to this
    # "termly" items fall due at the end of each term: month-day of the autumn, spring and
    # summer term ends (England's usual pattern; set your own calendar's dates).
    term_ends: list[str] = ["12-19", "03-31", "07-21"]
    # "Sept 2021 onwards" / "ongoing" with a start: how often it recurs unless the text or
    # the Recurrence column says otherwise.
    ongoing_recurrence: Literal["annually", "termly", "monthly"] = "annually"
    # Status values (case-insensitive) that mean "no more reminders".
    done_statuses: list[str] = ["Complete", "Completed", "Done", "Cancelled", "Closed"]
    # Where people act, shown in their reminders: the compliance workbook (a SharePoint link)
    # and a course per kind of training ("prevent", "dsp", "induction").
    workbook_link: str | None = None
    course_links: dict[str, str] = {}
    # Roles whose addresses reach everyone (a distribution list): they get the reminders for
    # items they own, never manager-only ones (escalations, team summaries, cells not
    # understood), which go to the admin instead if nobody else is configured.
    everyone_roles: list[str] = ["All staff"]

    @field_validator("workbook_link")
    @classmethod
    def _workbook_link(cls, value: str | None) -> str | None:
        return _check_link(value) if value else None

    @field_validator("course_links")
    @classmethod
    def _course_links(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(COURSE_KINDS))
        if unknown:
            raise ValueError(
                f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(COURSE_KINDS)}"
            )
        return {kind: _check_link(link) for kind, link in value.items()}

    @field_validator("offsets_days")
    @classmethod
    def _offsets(cls, value: list[int]) -> list[int]:
        if any(v < 0 for v in value):
            raise ValueError("offsets are days before the due date and cannot be negative")
        return sorted(set(value), reverse=True)

    @field_validator("term_ends")
    @classmethod
    def _term_ends(cls, value: list[str]) -> list[str]:
        for item in value:
            match = re.fullmatch(r"(\d\d)-(\d\d)", item.strip())
            if not match or not (1 <= int(match[1]) <= 12 and 1 <= int(match[2]) <= 31):
                raise ValueError(f"term end {item!r} is not MM-DD (for example 12-19)")
        return value


class Schedule(Section):
    # 5 s: an idle Graph cycle is one request (docs/microsoft-365.md, request budget)
    poll_seconds: int = Field(5, ge=5)
    escalation_check_minutes: int = Field(15, ge=1)
    digest_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    digest_time: time = time(8, 0)
    misfire_grace_seconds: int = Field(300, ge=1)


class State(Section):
    path: Path = Path("state")


class Report(Section):
    """The board / inspectors report (``prevent-service report``; yearly on ``send_on``)."""

    # Role names from [roles] and/or addresses; unset: the Executive Director role and the DSP.
    recipients: list[str] | None = None
    send_on: str = "09-01"  # month-day: the yearly report for the academic year just ended
    folder: Path | None = None  # where report workbooks go; default <state folder>/reports

    @field_validator("send_on")
    @classmethod
    def _send_on(cls, value: str) -> str:
        match = re.fullmatch(r"(\d\d)-(\d\d)", value.strip())
        try:  # a day every year has (not 29 February)
            valid = bool(match) and date(2001, int(match[1]), int(match[2])) is not None  # type: ignore[index]
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"{value!r} is not a month-day MM-DD (for example 09-01)")
        return value.strip()


# BaseModel's metaclass has a ``register`` method; the config key is ours and reads naturally.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class Config(Section):
    # A folder made by `init --demo`: invented people, so `check` lets example.org and other
    # placeholders pass. Never set it for real use.
    demo: bool = False
    organisation: Organisation
    people: People
    roles: dict[str, list[str]] = {}
    areas: dict[str, Area] = {}
    intake: Intake
    register: Register
    sending: Sending
    compliance: Compliance | None = None
    schedule: Schedule = Schedule()
    state: State = State()
    report: Report = Report()
    m365: M365 | None = None

    # Where the file came from, for resolving relative paths and for messages.
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("roles")
    @classmethod
    def _role_emails(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for role, emails in value.items():
            for address in emails:
                try:
                    _check_email(address)
                except ValueError as exc:
                    raise ValueError(f"role {role!r}: {exc}") from None
        return value

    @property
    def ledger_path(self) -> Path:
        return self.state.path / "ledger.sqlite3"

    @property
    def report_folder(self) -> Path:
        return self.report.folder or self.state.path / "reports"

    def role_addresses(self, role: str) -> list[str]:
        """Addresses for a role name, matched case-insensitively and ignoring spacing."""
        wanted = _norm(role)
        for name, emails in self.roles.items():
            if _norm(name) == wanted:
                return list(emails)
        return []


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


_TAGS = {"folder", "memory", "imap", "graph", "outbox", "smtp", "xlsx"}  # backend union tags


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in _TAGS and parts:
            continue  # the discriminated-union tag pydantic inserts; not a key the user wrote
        else:
            parts.append(str(item))
    return ".".join(parts)


def _message(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key ({_suggestion(err['loc'])}; see config/example-local.toml)"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "list_type":
        return 'should be a list in square brackets, for example ["a@example.org"]'
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _models(annotation: Any) -> list[Any]:
    """The section models an annotation allows (through Optional, unions, Annotated, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models(arg)]


def _tag_of(model: Any) -> tuple[Any, ...]:
    field = model.model_fields.get("backend")
    return tuple(getattr(field.annotation, "__args__", ())) if field else ()


def _suggestion(loc: tuple[Any, ...]) -> str:
    """'did you mean …' for a misspelt key, from the keys its section accepts."""
    candidates: list[Any] = [Config]
    for item in loc[:-1]:
        tagged = [m for m in candidates if item in _tag_of(m)]
        if tagged:  # the backend tag pydantic puts in the path
            candidates = tagged
            continue
        fields = [m.model_fields[item] for m in candidates if item in m.model_fields]
        if fields:  # otherwise a dict key (a role or area name): stay on the value's model
            candidates = _models(fields[0].annotation)
    known = {k for m in candidates for k in m.model_fields if k != "source"}
    close = difflib.get_close_matches(str(loc[-1]), sorted(known), n=1)
    return f"did you mean {close[0]!r}?" if close else "check the spelling"


def parse_config(data: dict[str, Any], *, source: Path | None = None) -> Config:
    """Validate a config dict; relative paths are resolved against ``source``'s folder."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = str(source) if source else "the config"
        others = [f"\n  also {_format_loc(e['loc'])}: {_message(dict(e))}" for e in errors[1:6]]
        if len(errors) > 6:
            others.append(f"\n  and {len(errors) - 6} more")
        raise ConfigError(
            f"{_message(dict(first))} (in {where}){''.join(others)}",
            key=_format_loc(first["loc"]),
        ) from None
    _check_report_recipients(config, str(source) if source else "the config")
    config = _derive_domains(config)
    base = source.parent if source else Path.cwd()
    return _resolve_paths(config, base).model_copy(update={"source": source})


# Public mailbox providers: a DSP's gmail.com address does not make every gmail.com sender staff.
_PUBLIC_MAIL = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "live.co.uk",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "ymail.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.co.uk",
        "mail.com",
        "btinternet.com",
        "sky.com",
        "virginmedia.com",
        "talktalk.net",
        "zoho.com",
    ]
)


def _derive_domains(config: Config) -> Config:
    """``organisation.domains`` left empty: the domains of the service's own address, the
    people and the roles are the organisation's (public mail providers never are); ``check``
    says which it took."""
    if config.organisation.domains:
        return config
    addresses = [config.intake.address, config.people.admin_email, config.people.dsp.email]
    if config.people.deputy_dsp:
        addresses.append(config.people.deputy_dsp.email)
    addresses += [a for emails in config.roles.values() for a in emails]
    domains = dict.fromkeys(a.rpartition("@")[2].strip().lower().rstrip(".") for a in addresses)
    derived = [d for d in domains if d and d not in _PUBLIC_MAIL]
    organisation = config.organisation.model_copy(update={"domains": derived})
    organisation._domains_derived = True
    return config.model_copy(update={"organisation": organisation})


def _check_report_recipients(config: Config, where: str) -> None:
    """Each ``[report] recipients`` entry is an address or a role that [roles] names."""
    for n, entry in enumerate(config.report.recipients or ()):
        if EMAIL_RE.match(entry.strip()):
            continue
        if not config.role_addresses(entry):
            raise ConfigError(
                f"{entry!r} is neither an e-mail address nor a role in [roles] (in {where})",
                key=f"report.recipients[{n}]",
            )


def _resolve_paths(model: BaseModel, base: Path) -> Any:
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            updates[name] = (base / value.expanduser()).resolve()
        elif isinstance(value, BaseModel):
            updates[name] = _resolve_paths(value, base)
    return model.model_copy(update=updates) if updates else model


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        # Run from the wrong folder, the default ./config.toml is the usual culprit: say where
        # it looked and the ways to point at the real one.
        raise ConfigError(
            f"config file not found: {path.absolute()} (give --config PATH or set "
            "PREVENT_SERVICE_CONFIG; 'prevent-service init DIR' makes a new one)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        # utf-8-sig: Notepad on Windows starts the file with a byte-order mark
        text = raw.decode("utf-8-sig")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if "\\" in text and re.search(r"escape|hex value", str(exc), re.IGNORECASE):
            hint = (
                " (a Windows path in double quotes: write it with forward slashes, or in single"
                " quotes, for example 'C:\\prevent\\register.xlsx')"
            )
        raise ConfigError(f"{path}: not valid TOML: {exc}{hint}") from None
    if not data:
        raise ConfigError(f"{path}: the file is empty (start from config/example-local.toml)")
    return parse_config(data, source=path.resolve())


def check_files(config: Config) -> None:
    """Files the config points at must exist (checked once, before any work starts)."""
    sections: list[tuple[str, Any]] = [("register.workbook", config.register.workbook)]
    if config.intake.forms is not None:
        sections.append(("intake.forms.workbook", config.intake.forms.workbook))
    if config.compliance is not None:
        sections.append(("compliance.workbook", config.compliance.workbook))
    for key, section in sections:
        path = getattr(section, "path", None)
        if section.backend == "xlsx" and isinstance(path, Path) and not path.is_file():
            remedy = "fix the path, or restore the file from its .backups/ folder"
            if not key.startswith("intake.forms"):  # Microsoft Forms makes its own workbook
                remedy += ", or make a new one with 'prevent-service provision'"
            raise ConfigError(f"file not found: {path} ({remedy})", key=f"{key}.path")
    for key, maybe in (
        ("m365.certificate_path", config.m365 and config.m365.certificate_path),
        ("m365.ca_bundle", config.m365 and config.m365.ca_bundle),
    ):
        if isinstance(maybe, Path) and not maybe.is_file():
            raise ConfigError(f"file not found: {maybe}", key=key)


def secret_from_env(name: str | None, *, key: str) -> str | None:
    """Read a secret from the environment variable the config names; never from the file."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set (it holds the secret)", key=key)
    return value


class Secret(str):
    """A string whose repr does not show it, so it never lands in a log or traceback."""

    def __repr__(self) -> str:
        return "Secret('***')"
