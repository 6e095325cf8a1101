"""The domain's record of a concern, as the service logs it.

A ``Concern`` holds the register's service-owned fields (design.md, flow 2). It is built
from a parsed e-mail or a Forms response, lives in memory for one cycle and is written to
the register; the ledger keeps only its ids, state and times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from service.indicators import Indicator, describe, groups_of, is_critical

Source = Literal["E-mail", "Form"]


@dataclass(frozen=True)
class Concern:
    source_key: str  # "mail:<item id>" or "form:<response ID>"
    source: Source
    reference: str
    recorded_at: datetime  # when the service logged it (local time for the register)
    reported_by: str
    reporter_email: str | None
    summary: str
    account: str
    indicators: tuple[Indicator, ...] = ()
    indicators_suggested: bool = True  # from e-mail text: a suggestion the DSP decides on
    unknown_indicators: tuple[str, ...] = ()  # form options we could not match, kept verbatim
    person_of_concern: str = ""
    learner_ref: str = ""
    dob_or_age: str = ""
    area: str = ""
    occurred_at: str = ""
    immediate_action: str = ""
    immediate_danger: str = ""
    others_told: str = ""
    attachments: tuple[str, ...] = ()
    link: str = ""
    message_id: str | None = None
    notes: tuple[str, ...] = field(default=())  # content-free remarks (truncated, defects)

    @property
    def critical(self) -> bool:
        """Any "more critical risk factor" — even one only suggested — or a reporter's
        "yes, someone is in immediate danger": over-alerting is the safe side."""
        return is_critical(self.indicators) or _is_yes(self.immediate_danger)

    @property
    def indicator_groups(self) -> list[str]:
        return groups_of(self.indicators)

    @property
    def indicators_text(self) -> str:
        text = describe(self.indicators, suggested=self.indicators_suggested)
        if self.unknown_indicators:
            extra = "; ".join(self.unknown_indicators)
            text = (
                f"{text}\nOther (as answered): {extra}" if text else f"Other (as answered): {extra}"
            )
        return text

    @property
    def critical_text(self) -> str:
        if not self.critical:
            return "No"
        if _is_yes(self.immediate_danger):
            return "Yes – immediate danger reported"
        return "Suggested – please check" if self.indicators_suggested else "Yes"

    @property
    def critical_reason(self) -> str:
        """Why the alert is urgent, in a sentence (no learner detail)."""
        reasons = []
        if _is_yes(self.immediate_danger):
            reasons.append("the reporter says someone is in immediate danger")
        if is_critical(self.indicators):
            how = " (suggested from its wording)" if self.indicators_suggested else ""
            reasons.append(f"it matches one of the policy's more critical risk factors{how}")
        return (" and ".join(reasons).capitalize() + ".") if reasons else ""

    @property
    def attachments_text(self) -> str:
        if not self.attachments:
            return ""
        return f"{len(self.attachments)} kept with the original: " + "; ".join(self.attachments)


def _is_yes(answer: str) -> bool:
    return answer.strip().lower().startswith(("yes", "y;")) or answer.strip().lower() == "y"
