"""The concern register's layout: which columns the service owns and which the DSP owns.

The service writes its columns once, at intake, and never rewrites a row. The DSP's columns
follow what Keeping Children Safe in Education asks of a record (decision and rationale,
referrals with dates, parent/carer informed, actions, outcome, review). ``Source key`` is
hidden; it makes appends idempotent (an append after an unclear failure reads it back first).
"""

from __future__ import annotations

from typing import Any

from connectors.base import ColumnSpec, TableSpec
from service.model import Concern

STATUS_NEW = "New"
STATUS_CHOICES = (
    STATUS_NEW,
    "Acknowledged",
    "In progress",
    "Referred",
    "Monitoring",
    "Closed – no further action",
    "Closed",
)
CLOSED_STATUSES = ("Closed – no further action", "Closed")
RISK_CHOICES = ("Not yet assessed", "Low", "Medium", "High")
YES_NO = ("Yes", "No", "Not applicable")
REFERRAL_CHOICES = ("Not referred", "Referred", "Decided not to refer", "Not applicable")

SOURCE_KEY = "Source key"
REFERENCE = "Reference"
STATUS = "Status"
RECORDED_AT = "Recorded at"

# Service-owned columns: header → Concern attribute.
SERVICE_COLUMNS: tuple[tuple[ColumnSpec, str], ...] = (
    (ColumnSpec(REFERENCE, "text", width=16), "reference"),
    (ColumnSpec(RECORDED_AT, "datetime", width=17), "recorded_at"),
    (ColumnSpec("Source", "text", width=10), "source"),
    (ColumnSpec("Reported by", "text", width=22), "reported_by"),
    (ColumnSpec("Reporter email", "text", width=26), "reporter_email"),
    (ColumnSpec("Person of concern", "text", width=22), "person_of_concern"),
    (ColumnSpec("Learner ref", "text", width=12), "learner_ref"),
    (ColumnSpec("DOB or age", "text", width=12), "dob_or_age"),
    (ColumnSpec("Centre/area", "text", width=16), "area"),
    (ColumnSpec("Occurred at", "text", width=17), "occurred_at"),
    (ColumnSpec("Risk indicators", "long_text", width=40), "indicators_text"),
    (ColumnSpec("Critical risk factor", "text", width=12), "critical_text"),
    (ColumnSpec("Summary", "long_text", width=30), "summary"),
    (ColumnSpec("Account", "long_text", width=60), "account"),
    (ColumnSpec("Immediate action taken", "long_text", width=30), "immediate_action"),
    (ColumnSpec("Anyone in immediate danger", "text", width=14), "immediate_danger"),
    (ColumnSpec("Others told", "text", width=20), "others_told"),
    (ColumnSpec("Attachments", "text", width=24), "attachments_text"),
    (ColumnSpec("Link to original", "text", width=30), "link"),
)

# DSP-owned columns: the service leaves them empty and never writes them.
DSP_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(STATUS, "choice", STATUS_CHOICES, width=16, owner="person"),
    ColumnSpec("Risk level", "choice", RISK_CHOICES, width=14, owner="person"),
    ColumnSpec("Decision and rationale", "long_text", width=40, owner="person"),
    ColumnSpec("Prevent referral (NRF)", "choice", REFERRAL_CHOICES, width=16, owner="person"),
    ColumnSpec("NRF date", "date", width=12, owner="person"),
    ColumnSpec("Channel", "choice", REFERRAL_CHOICES, width=16, owner="person"),
    ColumnSpec("Channel date", "date", width=12, owner="person"),
    ColumnSpec("Police", "choice", REFERRAL_CHOICES, width=16, owner="person"),
    ColumnSpec("Police date", "date", width=12, owner="person"),
    ColumnSpec("Children's social care", "choice", REFERRAL_CHOICES, width=16, owner="person"),
    ColumnSpec("Social care date", "date", width=12, owner="person"),
    ColumnSpec("Parent/carer informed", "choice", YES_NO, width=14, owner="person"),
    ColumnSpec("Actions (owner, due)", "long_text", width=40, owner="person"),
    ColumnSpec("Outcome", "long_text", width=30, owner="person"),
    ColumnSpec("Closed date", "date", width=12, owner="person"),
    ColumnSpec("Review date", "date", width=12, owner="person"),
)

HIDDEN_COLUMNS: tuple[ColumnSpec, ...] = (ColumnSpec(SOURCE_KEY, "hidden", width=30),)

REGISTER_COLUMNS: tuple[ColumnSpec, ...] = (
    *(spec for spec, _ in SERVICE_COLUMNS),
    *DSP_COLUMNS,
    *HIDDEN_COLUMNS,
)


def register_table_spec(
    table: str = "Concerns", rows: tuple[tuple[Any, ...], ...] = ()
) -> TableSpec:
    return TableSpec(sheet="Register", table=table, columns=REGISTER_COLUMNS, rows=rows)


def register_row(concern: Concern) -> dict[str, Any]:
    """The service-owned cells of a new row (header → value); DSP columns start empty,
    except Status, which starts as ``New`` so that escalation can see it."""
    row: dict[str, Any] = {spec.header: getattr(concern, attr) for spec, attr in SERVICE_COLUMNS}
    row[STATUS] = STATUS_NEW
    row[SOURCE_KEY] = concern.source_key
    return row
