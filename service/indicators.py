"""The policy's vulnerability and risk indicators, as data.

The wording of groups, labels and descriptions is copied from the seed policy
("VULNERABILITY/RISK INDICATORS"), typos included, so the register speaks the policy's words.
Keys are stable slugs for storage; labels may be corrected later without breaking them.

``assess`` / ``explain`` / ``suggest_from_text`` propose indicators, and signs that someone
may be in immediate danger, from the words of an e-mail or a Form answer, each with the words
that suggested it. The phrases are data with their sources (service/triage/knowledge.toml)
and the matcher is service/triage/engine.py; a match is only a suggestion the DSP decides on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from service.triage import KNOWLEDGE_FILE, Knowledge, KnowledgeError, knowledge

__all__ = [
    "ALL",
    "BY_KEY",
    "GROUPS",
    "Assessment",
    "DangerSign",
    "Indicator",
    "IndicatorGroup",
    "Suggestion",
    "assess",
    "describe",
    "explain",
    "form_choices",
    "from_form_answer",
    "groups_of",
    "is_critical",
    "suggest_from_text",
]

MAX_SCAN_CHARS = 200_000  # of an e-mail's text that suggestions look at


@dataclass(frozen=True)
class Indicator:
    """One item of the policy's lists (the phrases that suggest it are in the knowledge file)."""

    group: str
    label: str
    critical: bool
    key: str
    description: str = ""

    @property
    def choice(self) -> str:
        """The option text in the Microsoft Form ("Group: label"); it round-trips."""
        return f"{self.group}: {self.label}"


@dataclass(frozen=True)
class IndicatorGroup:
    name: str
    critical: bool
    items: tuple[Indicator, ...]


def _item(
    group: str, key: str, label: str, *, critical: bool = False, description: str = ""
) -> Indicator:
    return Indicator(group, label, critical, key, description)


_V = "Vulnerability"
_A = "Access to extremist influences"
_E = "Experiences, behaviours and influences"
_C = "More critical risk factors"

GROUPS: tuple[IndicatorGroup, ...] = (
    IndicatorGroup(
        _V,
        False,
        (
            _item(
                _V,
                "vulnerability.identity-crisis",
                "Identity crisis",
                description="Distance from cultural/religious heritage and uncomfortable with "
                "their place in the society around them",
            ),
            _item(
                _V,
                "vulnerability.personal-crisis",
                "Personal crisis",
                description="Family tensions; sense of isolation; adolescence; low self-esteem; "
                "Disassociating from existing friendship group and becoming involved with a new "
                "and different group of friends; searching for answers to questions about "
                "identity, faith and belonging",
            ),
            _item(
                _V,
                "vulnerability.personal-circumstances",
                "Personal circumstances",
                description="Migration; local community tensions, events affecting country or "
                "region of origin; alienation from UK values; having a sense of grievance that "
                "is triggered by personal experience of racism or discrimination or aspects of "
                "Government policy",
            ),
            _item(
                _V,
                "vulnerability.unmet-aspirations",
                "Unmet Aspirations",
                description="Perceptions of injustice; feeling of failure; rejection of civic life",
            ),
            _item(
                _V,
                "vulnerability.criminality",
                "Criminality",
                description="Experiences of imprisonment; poor resettlement/reintegration; "
                "previous involvement with criminal groups",
            ),
        ),
    ),
    IndicatorGroup(
        _A,
        False,
        (
            _item(
                _A,
                "influences.associates-with-extremists",
                "Reason to believe that the young person associates with those known to be "
                "involved in extremism",
            ),
            _item(
                _A,
                "influences.extremist-material",
                "Possession of distribution of extremist literature/other media material likely "
                "to incite racial/religious hatred or acts of violence",
            ),
            _item(
                _A,
                "influences.closed-network-groups",
                "Use of closed network groups via electronic media for the purpose of extremist "
                "activity",
            ),
        ),
    ),
    IndicatorGroup(
        _E,
        False,
        (
            _item(
                _E,
                "experiences.group-rejection",
                "Experience of peer, social, family or faith group rejection",
            ),
            _item(
                _E,
                "experiences.international-events",
                "International events in areas of conflict and civil unrest had a personal "
                "impact on the young person resulting in a noticeable change of behaviour",
            ),
            _item(
                _E,
                "experiences.supports-terrorist-attacks",
                "Verbal or written support of terrorist attacks",
            ),
            _item(
                _E,
                "experiences.hate-crime-victim",
                "First-hand experience of racial or religious hate crime",
            ),
            _item(
                _E,
                "experiences.travel-to-extremist-locations",
                "Extended periods of travel to international locations known to be associated "
                "with extremism",
            ),
            _item(
                _E,
                "experiences.fraudulent-identity",
                "Evidence of fraudulent identity/use of documents to support this",
            ),
            _item(
                _E,
                "experiences.disadvantage-discrimination",
                "Experience of disadvantage, discrimination or social exclusion",
            ),
            _item(
                _E,
                "experiences.criminal-history",
                "History of criminal activity",
            ),
            _item(
                _E,
                "experiences.immigration-decision-pending",
                "Pending a decision on their immigration/national status",
            ),
        ),
    ),
    IndicatorGroup(
        _C,
        True,
        (
            _item(
                _C,
                "critical.extremist-recruiters",
                "Being in contact with extremist recruiters",
                critical=True,
            ),
            _item(
                _C,
                "critical.supports-extremist-causes",
                "Voicing support for extremist causes or leaders",
                critical=True,
            ),
            _item(
                _C,
                "critical.extremist-websites",
                "Accessing extremist websites, especially those with a social networking element",
                critical=True,
            ),
            _item(
                _C,
                "critical.possesses-extremist-literature",
                "Possessing extremist literature",
                critical=True,
            ),
            _item(
                _C,
                "critical.justifies-violence",
                "Justifying the use of violence to solve societal issues",
                critical=True,
            ),
            _item(
                _C,
                "critical.joined-extremist-organisation",
                "Joining extremist organisation",
                critical=True,
            ),
            _item(
                _C,
                "critical.changed-appearance-behaviour",
                "Significant changes to appearance/behaviour",
                critical=True,
            ),
        ),
    ),
)

ALL: tuple[Indicator, ...] = tuple(item for group in GROUPS for item in group.items)
BY_KEY: dict[str, Indicator] = {item.key: item for item in ALL}
_ORDER: dict[str, int] = {item.key: n for n, item in enumerate(ALL)}
_GROUP_ORDER: dict[str, int] = {group.name: n for n, group in enumerate(GROUPS)}


@dataclass(frozen=True)
class Suggestion:
    """An indicator suggested from text, with the words that matched (for the DSP to see)
    and the knowledge rule and source behind it."""

    indicator: Indicator
    matched: str
    rule: str = ""
    source: str = ""

    @property
    def explanation(self) -> str:
        """ "'bombing the mosque' → Justifying the use of violence …" (quotes the text: only
        where the words of the concern may be shown)."""
        return f"'{self.matched}' → {self.indicator.label}"


@dataclass(frozen=True)
class DangerSign:
    """Words suggesting someone may be in immediate danger (a weapon, a time, a target)."""

    matched: str
    rule: str = ""
    source: str = ""

    @property
    def explanation(self) -> str:
        """ "'has a knife' → someone may be in immediate danger" (quotes the text)."""
        return f"'{self.matched}' → someone may be in immediate danger"


@dataclass(frozen=True)
class Assessment:
    """What the wording of a concern suggests: indicators (policy order, the first words that
    suggested each) and signs that someone may be in immediate danger."""

    suggestions: list[Suggestion]
    danger: list[DangerSign]
    # A rule's "more critical" suggestion that the learned layer, reading the wording as a
    # whole, finds clearly ordinary (a lesson, the news, the learner as the target): shown to
    # the DSP as named, but not as a critical factor, so it does not make the alert urgent.
    set_aside: list[Suggestion] = field(default_factory=list)

    @property
    def indicators(self) -> list[Indicator]:
        return [s.indicator for s in self.suggestions]


MAX_DANGER_SIGNS = 3


@cache
def _knowledge() -> Knowledge:
    """The knowledge file, loaded on first use (commands that scan nothing do not pay for
    it). Every rule must name indicators the policy has (or "danger"): a typo in the data
    file is an error naming the rule, not a silently dead rule."""
    known = knowledge()
    check_rules(known)
    return known


def check_rules(known: Knowledge) -> None:
    """Raise KnowledgeError naming the rule when one names an indicator the policy lacks."""
    for rule in known.rules:
        for key in rule.indicators:
            if key != "danger" and key not in BY_KEY:
                raise KnowledgeError(
                    f"{KNOWLEDGE_FILE}: rule {rule.id}: unknown indicator {key!r} "
                    f"(one of {', '.join(BY_KEY)} or 'danger')"
                )


def assess(text: str, *, learned: bool = True) -> Assessment:
    """Indicators and immediate-danger signs suggested by the text (the DSP decides).
    ``learned=False``: the rules alone, without the learned layer (the bench compares)."""
    if not text:
        return Assessment([], [])
    known = _knowledge()
    first: dict[str, Suggestion] = {}
    danger: list[DangerSign] = []
    danger_spans: list[tuple[int, int]] = []
    findings = known.find(text[:MAX_SCAN_CHARS])
    # A fallback rule (a bare name, say) counts only where no other rule suggested an
    # indicator of its group: "watching ISIS videos" is accessing, not also support.
    groups = {
        BY_KEY[key].group
        for f in findings
        if not f.rule.fallback
        for key in f.rule.indicators
        if key in BY_KEY
    }
    for finding in findings:
        rule = finding.rule
        if rule.fallback and any(
            key in BY_KEY and BY_KEY[key].group in groups for key in rule.indicators
        ):
            continue
        source = known.sources.get(rule.source, "")
        for key in rule.indicators:
            if key == "danger":
                # One sign per stretch of words ("has a knife" and "knife in his bag" are one).
                overlaps = any(finding.start < b and a < finding.end for a, b in danger_spans)
                if len(danger) < MAX_DANGER_SIGNS and not overlaps:
                    danger.append(DangerSign(finding.matched, rule.id, source))
                    danger_spans.append((finding.start, finding.end))
            elif key not in first:
                first[key] = Suggestion(BY_KEY[key], finding.matched, rule.id, source)
    suggestions = sorted(first.values(), key=lambda s: _ORDER[s.indicator.key])
    # The learned layer adds what the wording as a whole suggests and no rule named (a model
    # flag explains itself too). Imported here: it builds on this module's types.
    from service.triage.learned import MAX_MODEL_CHARS, add_learned

    rules = Assessment(suggestions, danger)
    return add_learned(text[:MAX_MODEL_CHARS], rules) if learned else rules


def explain(text: str) -> list[Suggestion]:
    """Suggested indicators, in policy order, each with the first words that matched."""
    return assess(text).suggestions


def suggest_from_text(text: str) -> list[Indicator]:
    """Indicators the words of an e-mail suggest, in policy order. The DSP decides."""
    return [s.indicator for s in explain(text)]


def _norm(text: str) -> str:
    """Case, spacing and punctuation-insensitive form of an option text."""
    text = text.casefold().replace("&", " and ")
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _option_index() -> dict[str, Indicator]:
    """Normalised option text → indicator, for every way a form might word an option."""
    index: dict[str, Indicator] = {}
    for item in ALL:
        for form in (
            item.key,
            item.label,
            f"{item.group} {item.label}",
            f"{item.label} {item.description}",
            f"{item.group} {item.label} {item.description}",
        ):
            index.setdefault(_norm(form), item)
    return index


_BY_OPTION = _option_index()
# Longest first, so "Group label" wins over a shorter label it happens to start with.
_PREFIXES = sorted(_BY_OPTION.items(), key=lambda kv: -len(kv[0]))


def _match_option(normalised: str) -> Indicator | None:
    """Exact wording first, else an option that starts with a label ("Criminality: prison")."""
    item = _BY_OPTION.get(normalised)
    if item is None:
        item = next((i for text, i in _PREFIXES if normalised.startswith(text + " ")), None)
    return item


def from_form_answer(answer: str | None) -> tuple[list[Indicator], list[str]]:
    """Indicators from a Forms multi-select answer (``;``-joined, often with a trailing ``;``).

    Options match by label, "Group: label", label plus description, or key, ignoring case,
    spacing and punctuation. Returns (matched in policy order, unmatched option texts as
    answered) so that nothing a reporter ticked or typed under "Other" is lost.
    """
    if not answer:
        return [], []
    matched: dict[str, Indicator] = {}
    unknown: list[str] = []
    for option in str(answer).split(";"):
        option = option.strip()
        if not option:
            continue
        item = _match_option(_norm(option))
        if item is not None:
            matched[item.key] = item
        elif option not in unknown:
            unknown.append(option)
    return sorted(matched.values(), key=lambda i: _ORDER[i.key]), unknown


def form_choices() -> list[str]:
    """The option texts for the Form's multi-select question, in policy order."""
    return [item.choice for item in ALL]


def is_critical(indicators: Iterable[Indicator]) -> bool:
    """Whether any is a "more critical risk factor" (alert with high importance)."""
    return any(item.critical for item in indicators)


def _ordered(indicators: Iterable[Indicator]) -> list[Indicator]:
    unique = {item.key: item for item in indicators}
    return sorted(unique.values(), key=lambda i: (not i.critical, _ORDER.get(i.key, len(ALL))))


def describe(indicators: Iterable[Indicator], *, suggested: bool) -> str:
    """Register cell text; critical factors first. Empty when there are none.

    "Suggested from e-mail text (the DSP decides): More critical risk factors — Accessing
    extremist websites, …; Vulnerability — Personal crisis" or "Reported: …".
    """
    items = _ordered(indicators)
    if not items:
        return ""
    lead = "Suggested from e-mail text (the DSP decides)" if suggested else "Reported"
    return f"{lead}: " + "; ".join(f"{i.group} — {i.label}" for i in items)


def groups_of(indicators: Iterable[Indicator]) -> list[str]:
    """Distinct group names in policy order (what an alert may say: no learner detail)."""
    names = {item.group for item in indicators}
    return sorted(names, key=lambda name: _GROUP_ORDER.get(name, len(GROUPS)))
