"""The domain's record of a concern, as the service logs it.

A ``Concern`` holds the register's service-owned fields (design.md, flow 2). It is built
from a parsed e-mail or a Forms response, lives in memory for one cycle and is written to
the register; the ledger keeps only its ids, state and times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from service.indicators import DangerSign, Indicator, Suggestion, describe, groups_of, is_critical

Source = Literal["E-mail", "Form"]
# A form answer up to this long is shown in an alert as given (a choice's text); longer is
# typed text, which may name a learner: a summary alert holds no learner detail.
_SHOWN_ANSWER_CHARS = 80


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
    # When it reached the service: the mailbox's received time, the form's completion time.
    received_at: datetime | None = None
    message_id: str | None = None
    reporter_external: bool = False  # reporter_email is outside organisation.domains
    notes: tuple[str, ...] = field(default=())  # content-free remarks (truncated, defects)
    case_note: str = ""  # for the alert: existing cases it quotes but was not added to
    # What the wording suggests, with the words that suggested it (service.indicators.assess):
    # for e-mail the same indicators as above; for a Form, what its free-text answers add.
    suggestions: tuple[Suggestion, ...] = ()
    danger_signs: tuple[DangerSign, ...] = ()
    # A rule named a critical factor, but the wording as a whole reads as ordinary (a lesson,
    # the news): shown to the DSP, never counted as critical (Assessment.set_aside).
    set_aside: tuple[Suggestion, ...] = ()

    @property
    def _added(self) -> list[Indicator]:
        """Indicators only the wording suggests (a Form's free text beyond what was ticked)."""
        have = {i.key for i in self.indicators}
        return [s.indicator for s in self.suggestions if s.indicator.key not in have]

    @property
    def critical(self) -> bool:
        """Any "more critical risk factor" — even one only suggested — or immediate danger,
        reported or suggested by the wording: over-alerting is the safe side."""
        return (
            is_critical(self.indicators)
            or is_critical(self._added)
            or _is_yes(self.immediate_danger)
            or bool(self.danger_signs)
        )

    @property
    def indicator_groups(self) -> list[str]:
        return groups_of([*self.indicators, *self._added])

    @property
    def indicators_text(self) -> str:
        """The register cell: reported/suggested indicators, what the wording added, and
        which words suggested which indicator (the register holds the account already)."""
        lines = [describe(self.indicators, suggested=self.indicators_suggested)]
        if self._added:
            lines.append(
                describe(self._added, suggested=True).replace(
                    "Suggested from e-mail text", "Suggested from the answers' wording", 1
                )
            )
        if self.unknown_indicators:
            lines.append(f"Other (as answered): {'; '.join(self.unknown_indicators)}")
        lines += [f"Suggested from: {line}" for line in self.suggested_from]
        lines += [f"{SET_ASIDE_LABEL}: {s.explanation}" for s in self.set_aside]
        return "\n".join(line for line in lines if line)

    @property
    def unknown_answers_text(self) -> str:
        """The form's answers that are none of its known options, for the alert: a choice's
        text as given (an option added or renamed in the form), marked as such. A longer text
        is what someone typed under "Other" and may name a learner, which a summary alert
        never does: it is counted and left in the register."""
        short = [a for a in self.unknown_indicators if len(a) <= _SHOWN_ANSWER_CHARS]
        typed = len(self.unknown_indicators) - len(short)
        parts = []
        if short:
            quoted = "; ".join(f"“{a}”" for a in short)
            parts.append(f"{quoted} (as answered on the form: not one of its known options)")
        if typed:
            parts.append(
                f"{typed} longer answer{'s' if typed > 1 else ''} typed on the form, not one of "
                "its known options: read it in the register"
            )
        return "; ".join(parts)

    @property
    def suggested_from(self) -> list[str]:
        """ "'bombing the mosque' → Justifying the use of violence …", one per suggestion.
        Quotes the concern's words: for the register and alert_detail = "full" only."""
        why = [s.explanation for s in self.suggestions]
        why += [d.explanation for d in self.danger_signs]
        return why

    @property
    def suggested_names(self) -> list[str]:
        """What the wording suggested, by name only (never the words): safe for any alert."""
        names = [s.indicator.label for s in self.suggestions]
        if self.danger_signs:
            names.append("Someone may be in immediate danger")
        return names

    @property
    def set_aside_names(self) -> list[str]:
        """Critical factors a rule named in wording that reads as ordinary, by name only."""
        return [s.indicator.label for s in self.set_aside]

    @property
    def in_danger(self) -> bool:
        """Someone may be in immediate danger (the form's answer, or the wording): the alert
        tells the DSP to call 999 before anything else."""
        return _is_yes(self.immediate_danger) or bool(self.danger_signs)

    @property
    def critical_text(self) -> str:
        if not self.critical:
            if self.set_aside:
                return "No – one was named, but the wording reads as ordinary; please check"
            return "No"
        if _is_yes(self.immediate_danger):
            return "Yes – immediate danger reported"
        if self.danger_signs:
            return "Suggested – the wording suggests immediate danger; please check"
        if is_critical(self.indicators) and not self.indicators_suggested:
            return "Yes"
        return "Suggested – please check"

    @property
    def critical_reason(self) -> str:
        """Why the alert is urgent, in a sentence (no learner detail)."""
        reasons = []
        if _is_yes(self.immediate_danger):
            reasons.append("the reporter says someone is in immediate danger")
        elif self.danger_signs:
            reasons.append("its wording suggests someone may be in immediate danger")
        if is_critical(self.indicators):
            how = " (suggested from its wording)" if self.indicators_suggested else ""
            reasons.append(f"it matches one of the policy's more critical risk factors{how}")
        elif is_critical(self._added):
            reasons.append("its wording suggests one of the policy's more critical risk factors")
        return (" and ".join(reasons).capitalize() + ".") if reasons else ""

    @property
    def attachments_text(self) -> str:
        if not self.attachments:
            return ""
        return f"{len(self.attachments)} kept with the original: " + "; ".join(self.attachments)


SET_ASIDE_LABEL = (
    "Named, but not marked urgent (the wording as a whole reads as ordinary, e.g. a lesson "
    "or the news; please check)"
)


def _is_yes(answer: str) -> bool:
    return answer.strip().lower().startswith(("yes", "y;")) or answer.strip().lower() == "y"
