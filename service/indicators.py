"""The policy's vulnerability and risk indicators, as data.

The wording of groups, labels and descriptions is copied from the seed policy
("VULNERABILITY/RISK INDICATORS"), typos included, so the register speaks the policy's words.
Keys are stable slugs for storage; labels may be corrected later without breaking them.

``suggest_from_text`` proposes indicators from the words of an e-mail. It is deliberately
simple and explainable: each indicator has a few case-insensitive, word-bounded patterns
(British and American spellings), and a match is only a suggestion that the DSP decides on.
The one guard against negation is narrow ("no evidence of …", "no concerns about …" earlier in
the same sentence): over-alerting is the safe side, so a plain "not" does not cancel a match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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
MAX_MATCHES_TRIED = 50  # per indicator, when earlier matches were negated


@dataclass(frozen=True)
class Indicator:
    """One item of the policy's lists. ``patterns`` are the regexes that suggest it."""

    group: str
    label: str
    critical: bool
    key: str
    description: str = ""
    patterns: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def choice(self) -> str:
        """The option text in the Microsoft Form ("Group: label"); it round-trips."""
        return f"{self.group}: {self.label}"


@dataclass(frozen=True)
class IndicatorGroup:
    name: str
    critical: bool
    items: tuple[Indicator, ...]


# Reusable pattern pieces. Everything is matched case-insensitively with word boundaries.
_EXTREMIST = (
    r"(?:extremis[mt]s?|extremist|terroris[mt]s?|terrorist|jihad\w*|radical(?:s|ised|ized)?|"
    r"isis|isil|daesh|islamic state|al[- ]?qa[ei]da|taliban|far[- ]right|extreme[- ]right|"
    r"neo[- ]?nazis?|nazis?|white supremac(?:y|ist)s?|white power|national action|"
    r"proscribed)"
)
_HIS = r"(?:his|her|their|my|the)"
_VIEWING = (
    r"(?:watch\w*|view\w*|look\w* at|looked up|brows\w*|visit\w*|access\w*|search\w* for|"
    r"stream\w*|download\w*|shar\w+|show\w*)"
)
_MEDIA = (
    r"(?:videos?|websites?|web ?sites?|sites?|content|clips?|footage|forums?|channels?|"
    r"pages?|posts?|accounts?|propaganda|livestreams?|live streams?)"
)
_GROUPS_OF_PEOPLE = (
    r"(?:muslims|jews|immigrants|migrants|refugees|asylum seekers|christians|hindus|sikhs|"
    r"non-?believers|unbelievers|infidels|kuffar|kafirs?|foreigners|white people|black people|"
    r"gay people|police|soldiers)"
)


def _item(
    group: str,
    key: str,
    label: str,
    patterns: Sequence[str],
    *,
    critical: bool = False,
    description: str = "",
) -> Indicator:
    return Indicator(group, label, critical, key, description, tuple(patterns))


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
                [
                    r"identity crisis",
                    rf"(?:distanc\w+|disconnect\w*|cut off|cutting \w+ off) from {_HIS}? ?"
                    r"(?:own )?(?:cultur\w*|religio\w*|heritage|faith|community|roots)",
                    r"(?:doesn'?t|does not|don'?t|do not|didn'?t|did not) (?:feel (?:like )?"
                    r"(?:he|she|they) )?(?:belongs?|fits? in)(?:\s+anywhere)?",
                    rf"uncomfortable (?:with|about) {_HIS} (?:place|identity|heritage)",
                ],
                description="Distance from cultural/religious heritage and uncomfortable with "
                "their place in the society around them",
            ),
            _item(
                _V,
                "vulnerability.personal-crisis",
                "Personal crisis",
                [
                    r"family (?:tensions?|breakdown|conflict|problems|difficult(?:y|ies))",
                    r"isolat(?:ed|ion|ing (?:himself|herself|themselves))",
                    r"low self[- ]?esteem",
                    r"new (?:group of |set of )?friends",
                    r"(?:new|different) (?:friendship )?(?:group|crowd)",
                    rf"(?:dropped|left|distanc\w+ (?:himself |herself |themselves )?from|"
                    rf"stopped (?:seeing|talking to)|fallen out with) {_HIS} "
                    r"(?:old |usual |existing )?(?:friends|friendship group)",
                    r"(?:searching|looking) for (?:answers|meaning|belonging|a sense of belonging)",
                    r"questions about (?:identity|faith|belonging)",
                    r"(?:become|became|becoming|is|seems|very|more|increasingly) withdrawn",
                ],
                description="Family tensions; sense of isolation; adolescence; low self-esteem; "
                "Disassociating from existing friendship group and becoming involved with a new "
                "and different group of friends; searching for answers to questions about "
                "identity, faith and belonging",
            ),
            _item(
                _V,
                "vulnerability.personal-circumstances",
                "Personal circumstances",
                [
                    r"migra(?:nt|nts|tion|ted)",
                    r"refugees?",
                    r"community tensions?",
                    r"(?:sense of )?grievances?",
                    r"(?:reject\w*|hostil\w+ (?:to|towards)|alienat\w+ from|against|hates?) "
                    r"(?:british|uk|western) values",
                    rf"events (?:in|affecting) {_HIS} (?:home )?(?:country|region)",
                ],
                description="Migration; local community tensions, events affecting country or "
                "region of origin; alienation from UK values; having a sense of grievance that "
                "is triggered by personal experience of racism or discrimination or aspects of "
                "Government policy",
            ),
            _item(
                _V,
                "vulnerability.unmet-aspirations",
                "Unmet Aspirations",
                [
                    r"injustices?",
                    r"(?:feel\w*|feeling of|sense of|sees? (?:himself|herself|themselves) as) "
                    r"(?:like )?(?:a )?failure",
                    r"reject\w* (?:of )?civic life",
                ],
                description="Perceptions of injustice; feeling of failure; rejection of civic life",
            ),
            _item(
                _V,
                "vulnerability.criminality",
                "Criminality",
                [
                    r"imprison\w*|prison|jail(?:ed)?|gaol|young offenders?'? institution",
                    r"resettlement|reintegrat\w+",
                    r"criminal (?:groups?|gangs?|associates?)|gangs?|county lines",
                    r"probation officer|youth offending (?:team|service)",
                ],
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
                [
                    rf"(?:associat\w+|friends?|mix\w*|hang\w* (?:out|around)|spend\w* time|"
                    rf"involved|in touch|in contact) with (?:the |a |an |some |other )?"
                    rf"(?:known |local )?{_EXTREMIST}",
                    r"known to be involved in extremism",
                ],
            ),
            _item(
                _A,
                "influences.extremist-material",
                "Possession of distribution of extremist literature/other media material likely "
                "to incite racial/religious hatred or acts of violence",
                [
                    rf"(?:distribut\w+|shar\w+|hand\w* out|post\w*|spread\w*|circulat\w+|"
                    rf"stick\w*|put\w* up) (?:\w+ ){{0,2}}(?:{_EXTREMIST}|racist|hate|hateful|"
                    r"antisemitic|anti-semitic|islamophobic) (?:material|literature|leaflets?|"
                    r"flyers?|stickers?|videos?|content|posts?|memes?|images?|propaganda|music)",
                    r"hate (?:material|leaflets|stickers|propaganda)",
                    r"incit\w+ (?:racial |religious )?(?:hatred|violence)",
                ],
            ),
            _item(
                _A,
                "influences.closed-network-groups",
                "Use of closed network groups via electronic media for the purpose of extremist "
                "activity",
                [
                    r"(?:closed|private|secret|encrypted|invite-only) (?:online |group )?"
                    r"(?:groups?|chats?|networks?|channels?|servers?|forums?)",
                    r"(?:telegram|discord) (?:groups?|chats?|servers?|channels?)",
                    r"4chan|8chan|8kun|dark ?web",
                ],
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
                [
                    rf"(?:reject\w*|disown\w*|ostraci[sz]\w*|shunned|thrown out|kicked out|"
                    rf"cut off) by {_HIS}? ?(?:peers|friends|family|parents|community|mosque|"
                    r"church|temple|gurdwara|synagogue|faith group|classmates)",
                    r"(?:peer|social|family|faith)(?: group)? rejection",
                ],
            ),
            _item(
                _E,
                "experiences.international-events",
                "International events in areas of conflict and civil unrest had a personal "
                "impact on the young person resulting in a noticeable change of behaviour",
                [
                    r"international events|areas? of conflict|conflict zones?|war zones?",
                    r"(?:war|conflict|civil unrest|unrest|atrocit(?:y|ies)|genocide|invasion|"
                    r"bombing) (?:in|of|over) (?:the )?(?:syria|iraq|gaza|palestine|israel|"
                    r"ukraine|russia|afghanistan|kashmir|yemen|somalia|libya|sudan|myanmar|"
                    r"middle east)",
                ],
            ),
            _item(
                _E,
                "experiences.supports-terrorist-attacks",
                "Verbal or written support of terrorist attacks",
                [
                    r"(?:support\w*|prais\w+|celebrat\w+|glorif\w+|admir\w+|approv\w+ of|"
                    r"cheer\w*|jok\w+ about|laugh\w* about|happy about|pleased about|justif\w+) "
                    r"(?:for |of )?(?:the |a |an |recent |these |those )*(?:terror\w*|"
                    r"suicide|mass) (?:attacks?|bombings?|atrocit(?:y|ies)|shootings?)",
                    r"(?:terror\w*|suicide) (?:attacks?|bombings?) (?:was|were|is|are) "
                    r"(?:a )?(?:good|justified|deserved|right|brilliant|great)",
                ],
            ),
            _item(
                _E,
                "experiences.hate-crime-victim",
                "First-hand experience of racial or religious hate crime",
                [
                    r"hate crimes?",
                    r"(?:racially|religiously) (?:motivated|aggravated)",
                    r"(?:victim|target\w*) of (?:a |an )?(?:racis[mt]|racial\w*|religious\w*|"
                    r"islamophobi\w+|antisemiti\w+|anti-semiti\w+) ?(?:abuse|attacks?|assault|"
                    r"harassment|incidents?|comments)?",
                    r"(?:racist|islamophobic|antisemitic|anti-semitic) (?:abuse|attacks?|assault|"
                    r"harassment|incidents?) (?:against|towards|on|directed at) (?:him|her|them)",
                ],
            ),
            _item(
                _E,
                "experiences.travel-to-extremist-locations",
                "Extended periods of travel to international locations known to be associated "
                "with extremism",
                [
                    r"(?:extended|long|prolonged|unexplained|lengthy) (?:periods? of )?"
                    r"(?:travel|trips?|absences?|stays?) (?:abroad|overseas)",
                    r"extended periods? of travel",
                    r"(?:travel\w*|trips?|went|gone|going|flew|fly\w*|been|visit\w*|stay\w*) "
                    r"(?:back |abroad |overseas )?(?:to|in) (?:syria|iraq|afghanistan|somalia|"
                    r"yemen|libya|mali|a conflict zone|a war zone)",
                ],
            ),
            _item(
                _E,
                "experiences.fraudulent-identity",
                "Evidence of fraudulent identity/use of documents to support this",
                [
                    r"(?:fake|false|forged|fraudulent|stolen|someone else'?s|counterfeit) "
                    r"(?:id|ids|identity|identities|identification|passports?|documents?|papers|"
                    r"driving licen[cs]es?)",
                    r"(?:us\w+|gave|giving|goes by) (?:a )?(?:false|fake|made-up) "
                    r"(?:names?|identity|date of birth)",
                ],
            ),
            _item(
                _E,
                "experiences.disadvantage-discrimination",
                "Experience of disadvantage, discrimination or social exclusion",
                [
                    r"social(?:ly)? exclu\w+|disadvantaged?",
                    r"(?:experienc\w+|fac\w+|suffer\w*|subject\w* to|victim of|target of) "
                    r"(?:\w+ ){0,2}(?:racism|discrimination|prejudice)",
                    r"discriminated against",
                ],
            ),
            _item(
                _E,
                "experiences.criminal-history",
                "History of criminal activity",
                [
                    r"criminal (?:records?|history|activit(?:y|ies)|convictions?|past)",
                    r"(?:previous|previously|prior|past|earlier) (?:convictions?|arrests?|"
                    r"offen[cs]es?|cautions?)",
                    r"(?:has been|had been|was|were|been|got) (?:\w+ )?(?:arrested|convicted)",
                    r"cautioned by (?:the )?police",
                    r"known to (?:the )?police",
                ],
            ),
            _item(
                _E,
                "experiences.immigration-decision-pending",
                "Pending a decision on their immigration/national status",
                [
                    r"(?:immigration|asylum|visa|leave to remain|residency|refugee|citizenship|"
                    r"settled) (?:status|claims?|applications?|appeals?|decisions?|cases?|"
                    r"hearings?)|national status",
                    r"asylum seekers?|seeking asylum",
                    r"home office (?:decisions?|interviews?|appeals?|hearings?)",
                ],
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
                [
                    rf"{_EXTREMIST}\W+(?:\w+\W+){{0,6}}?recruit\w*",
                    rf"recruit\w*\W+(?:\w+\W+){{0,6}}?{_EXTREMIST}",
                    r"(?:tried|trying|try|tries|attempt\w*|wants?|wanted) to recruit "
                    r"(?:him|her|them|me|others|other (?:students|learners|young people))",
                    r"(?:tried|trying|attempt\w*) to radicali[sz]e",
                    r"(?:being|been|is|was|were) (?:groomed|radicali[sz]ed) (?:online )?by",
                ],
                critical=True,
            ),
            _item(
                _C,
                "critical.supports-extremist-causes",
                "Voicing support for extremist causes or leaders",
                [
                    rf"(?:support\w*|prais\w+|admir\w+|glorif\w+|idoli[sz]\w+|fan of|agree\w* "
                    rf"with|sympathi[sz]\w+ with|talk\w* (?:positively|approvingly) about) "
                    rf"(?:the |a )?{_EXTREMIST}",
                    rf"{_EXTREMIST} (?:views|ideology|ideolog\w+|ideas|beliefs|opinions|rhetoric|"
                    r"comments|remarks|slogans|symbols|songs|causes?|leaders?|salute)",
                    r"far[- ]right|extreme[- ]right|neo[- ]?nazi\w*|white supremac\w+|"
                    r"white power|jihadi|jihadis[mt]s?|jihadis|race war|swastikas?|"
                    r"nazi salute|sieg heil",
                ],
                critical=True,
            ),
            _item(
                _C,
                "critical.extremist-websites",
                "Accessing extremist websites, especially those with a social networking element",
                [
                    rf"{_EXTREMIST} {_MEDIA}",
                    rf"{_VIEWING} (?:\w+ ){{0,3}}?(?:{_EXTREMIST}|beheading|execution|"
                    rf"terror attack) {_MEDIA}",
                    r"(?:beheading|execution) (?:videos?|clips?|footage)",
                    r"(?:attack|shooting|massacre) (?:livestreams?|live streams?|videos?|"
                    r"footage|manifestos?)",
                ],
                critical=True,
            ),
            _item(
                _C,
                "critical.possesses-extremist-literature",
                "Possessing extremist literature",
                [
                    rf"{_EXTREMIST} (?:literature|books?|leaflets?|pamphlets?|magazines?|"
                    r"manifestos?|flags?|material|publications?|documents?|manuals?|texts?)",
                    r"(?:bomb|weapons?|explosives?)[- ]making (?:manuals?|instructions|guides?)",
                    r"(?:bomb|weapons?|explosives?) (?:manuals?|instructions)",
                ],
                critical=True,
            ),
            _item(
                _C,
                "critical.justifies-violence",
                "Justifying the use of violence to solve societal issues",
                [
                    r"justif\w+ (?:the |a |an )?(?:use of )?(?:terror\w* )?(?:violence|violent|"
                    r"killing|killings|attacks?|bombings?|murders?)",
                    r"violence (?:is|was|would be) (?:justified|necessary|needed|the (?:only )?"
                    r"(?:answer|way|solution)|acceptable|ok|okay)",
                    r"(?:attacks?|bombings?|killings?|murders?|shootings?) (?:was|were|is|are) "
                    r"(?:justified|deserved|necessary)",
                    rf"(?:kill\w*|shoot\w*|bomb\w*|attack\w*|exterminat\w+|wipe out|wiping out) "
                    rf"(?:all )?(?:the |those |these )?{_GROUPS_OF_PEOPLE}",
                    rf"{_GROUPS_OF_PEOPLE} (?:should|deserve to|ought to|need to) "
                    r"(?:be )?(?:killed|die|shot|bombed|attacked|wiped out|exterminated)",
                ],
                critical=True,
            ),
            _item(
                _C,
                "critical.joined-extremist-organisation",
                "Joining extremist organisation",
                [
                    rf"(?:join\w*|member\w* of|signed up (?:to|for|with)|pledg\w+ "
                    rf"(?:allegiance|loyalty) to|swor\w+ allegiance to) (?:an? |the )?"
                    rf"{_EXTREMIST}",
                    r"(?:go|going|went|travel\w*|leave|left) (?:abroad |overseas )?"
                    r"(?:and |to )fight (?:in|for|with)",
                ],
                critical=True,
            ),
            _item(
                _C,
                "critical.changed-appearance-behaviour",
                "Significant changes to appearance/behaviour",
                [
                    r"(?:sudden|significant|marked|noticeable|big|dramatic|drastic|major|huge) "
                    r"(?:\w+ ){0,2}?changes? (?:in|to|of) (?:\w+ ){0,2}?(?:appearance|behaviour|"
                    r"behavior|dress|clothing|attitude|personality|views)",
                    r"chang\w+ (?:(?:his|her|their) )?(?:appearance|dress|clothing)",
                    r"chang\w+ (?:his|her|their) (?:look|style|image)",
                    r"(?:appearance|behaviour|behavior) (?:has )?(?:changed|changing) "
                    r"(?:significantly|dramatically|suddenly|drastically|a lot|completely)",
                ],
                critical=True,
            ),
        ),
    ),
)

ALL: tuple[Indicator, ...] = tuple(item for group in GROUPS for item in group.items)
BY_KEY: dict[str, Indicator] = {item.key: item for item in ALL}
_ORDER: dict[str, int] = {item.key: n for n, item in enumerate(ALL)}
_GROUP_ORDER: dict[str, int] = {group.name: n for n, group in enumerate(GROUPS)}


def _flexible_spaces(pattern: str) -> str:
    """Let each space in a pattern match any run of whitespace (line breaks included);
    an optional space (" ?") matches none or any run."""
    out: list[str] = []
    in_class = escaped = False
    n = 0
    while n < len(pattern):
        ch = pattern[n]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == " " and in_class:
            ch = r"\s"
        elif ch == " " and pattern[n + 1 : n + 2] == "?":
            ch = r"\s*"
            n += 1
        elif ch == " ":
            ch = r"\s+"
        elif ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        n += 1
    return "".join(out)


def _compile(item: Indicator) -> re.Pattern[str]:
    body = "|".join(f"(?:{_flexible_spaces(p)})" for p in item.patterns)
    return re.compile(rf"(?<![\w-])(?:{body})(?![\w])", re.IGNORECASE)


_COMPILED: tuple[tuple[Indicator, re.Pattern[str]], ...] = tuple(
    (item, _compile(item)) for item in ALL
)
# "There is no evidence that he …", "no concerns about …": only these cancel a match.
_NEGATION = re.compile(
    r"\b(?:no (?:concerns?|evidence|signs?|indications?|suggestion|reason to (?:believe|think))|"
    r"nothing to suggest|not aware of any|there (?:is|was|are|were) no|none of)\b",
    re.IGNORECASE,
)
# Where a clause ends, a negation before it no longer applies ("No concerns about X, but …").
_CLAUSE_END = re.compile(r"[.!?;\n]\s|\b(?:but|however|although|though|except)\b", re.I)


@dataclass(frozen=True)
class Suggestion:
    """An indicator suggested from text, with the words that matched (for the DSP to see)."""

    indicator: Indicator
    matched: str


def _negated(text: str, start: int) -> bool:
    window = text[max(0, start - 80) : start]
    ends = list(_CLAUSE_END.finditer(window))
    if ends:
        window = window[ends[-1].end() :]
    return bool(_NEGATION.search(window))


def explain(text: str) -> list[Suggestion]:
    """Suggested indicators, in policy order, each with the first words that matched."""
    if not text:
        return []
    text = text[:MAX_SCAN_CHARS]
    found: list[Suggestion] = []
    for item, pattern in _COMPILED:
        for n, match in enumerate(pattern.finditer(text)):
            if n >= MAX_MATCHES_TRIED:
                break
            if not _negated(text, match.start()):
                found.append(Suggestion(item, " ".join(match.group(0).split())[:80]))
                break
    return found


@dataclass(frozen=True)
class DangerSign:
    """Words suggesting someone may be in immediate danger (a weapon, a time, a target)."""

    matched: str
    reason: str


@dataclass(frozen=True)
class Assessment:
    """What the wording of a concern suggests: indicators, and signs of immediate danger."""

    suggestions: list[Suggestion]
    danger: list[DangerSign]


def assess(text: str) -> Assessment:
    """Indicators and immediate-danger signs suggested by the text (the DSP decides)."""
    return Assessment(explain(text), [])


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
