"""The policy's risk indicators: wording, form round-trip, critical flag and suggestions.

Texts here are invented concern e-mails; no real people.
"""

from __future__ import annotations

import re

import pytest

from service.indicators import (
    ALL,
    BY_KEY,
    GROUPS,
    MAX_SCAN_CHARS,
    Indicator,
    IndicatorGroup,
    describe,
    explain,
    form_choices,
    from_form_answer,
    groups_of,
    is_critical,
    suggest_from_text,
)
from service.triage import knowledge

# ---------------------------------------------------------------------------- the data


def test_four_groups_in_policy_order_with_their_items() -> None:
    assert [(g.name, g.critical, len(g.items)) for g in GROUPS] == [
        ("Vulnerability", False, 5),
        ("Access to extremist influences", False, 3),
        ("Experiences, behaviours and influences", False, 9),
        ("More critical risk factors", True, 7),
    ]
    assert len(ALL) == 24
    for group in GROUPS:
        assert all(i.group == group.name and i.critical == group.critical for i in group.items)


def test_wording_is_the_policy_wording() -> None:
    """Spot checks copied from the seed policy, odd wording included."""
    labels = [i.label for i in ALL]
    assert labels[:5] == [
        "Identity crisis",
        "Personal crisis",
        "Personal circumstances",
        "Unmet Aspirations",
        "Criminality",
    ]
    assert BY_KEY["vulnerability.unmet-aspirations"].description == (
        "Perceptions of injustice; feeling of failure; rejection of civic life"
    )
    assert BY_KEY["influences.extremist-material"].label == (
        "Possession of distribution of extremist literature/other media material likely to "
        "incite racial/religious hatred or acts of violence"
    )
    assert [i.label for i in GROUPS[3].items] == [
        "Being in contact with extremist recruiters",
        "Voicing support for extremist causes or leaders",
        "Accessing extremist websites, especially those with a social networking element",
        "Possessing extremist literature",
        "Justifying the use of violence to solve societal issues",
        "Joining extremist organisation",
        "Significant changes to appearance/behaviour",
    ]
    assert GROUPS[2].items[-1].label == "Pending a decision on their immigration/national status"


def test_keys_and_labels_are_unique_stable_slugs() -> None:
    assert len({i.key for i in ALL}) == len(ALL)
    assert len({i.label.casefold() for i in ALL}) == len(ALL)
    assert all(re.fullmatch(r"[a-z]+\.[a-z-]+", i.key) for i in ALL)
    # every item can be suggested: some rule of the knowledge file names it
    named = {key for rule in knowledge().rules for key in rule.indicators}
    assert {i.key for i in ALL} <= named


def test_form_choices_round_trip_and_never_contain_the_separator() -> None:
    choices = form_choices()
    assert len(choices) == len(ALL)
    assert all(";" not in c for c in choices)
    matched, unknown = from_form_answer(";".join(choices) + ";")
    assert matched == list(ALL)
    assert unknown == []


# ---------------------------------------------------------------------------- form answers


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_each_groups_items_parse_from_a_forms_answer(group: IndicatorGroup) -> None:
    items = group.items
    answer = " ;  ".join(i.label.upper() for i in items) + ";"
    matched, unknown = from_form_answer(answer)
    assert matched == list(items)
    assert unknown == []


@pytest.mark.parametrize(
    "option",
    [
        "Personal crisis",
        "personal   crisis ",
        "Vulnerability: Personal crisis",
        "Vulnerability — Personal crisis",
        "Vulnerability - Personal crisis.",
        "PERSONAL CRISIS: family tensions",  # a label with words after it
        "vulnerability.personal-crisis",
    ],
)
def test_option_wording_variants_match(option: str) -> None:
    matched, _ = from_form_answer(option)
    assert matched[:1] == [BY_KEY["vulnerability.personal-crisis"]]


def test_label_with_its_description_matches() -> None:
    item = BY_KEY["vulnerability.identity-crisis"]
    matched, unknown = from_form_answer(f"{item.label}: {item.description};")
    assert (matched, unknown) == ([item], [])


def test_unknown_options_are_kept_verbatim_in_order() -> None:
    answer = (
        "Other: talks about 'the cause' a lot;Personal crisis;;  Something else ; "
        "Other: talks about 'the cause' a lot;"
    )
    matched, unknown = from_form_answer(answer)
    assert matched == [BY_KEY["vulnerability.personal-crisis"]]
    assert unknown == ["Other: talks about 'the cause' a lot", "Something else"]


@pytest.mark.parametrize("answer", [None, "", ";", " ; ;"])
def test_empty_answers(answer: str | None) -> None:
    assert from_form_answer(answer) == ([], [])


def test_duplicates_collapse_and_results_are_in_policy_order() -> None:
    answer = "Criminality;Possessing extremist literature;Identity crisis;criminality"
    matched, _ = from_form_answer(answer)
    assert [i.key for i in matched] == [
        "vulnerability.identity-crisis",
        "vulnerability.criminality",
        "critical.possesses-extremist-literature",
    ]


# ---------------------------------------------------------------------------- critical, describe


def test_is_critical_only_for_the_more_critical_group() -> None:
    assert is_critical([BY_KEY["critical.extremist-websites"]]) is True
    assert is_critical(
        [BY_KEY["vulnerability.personal-crisis"], BY_KEY["critical.justifies-violence"]]
    )
    assert is_critical([i for i in ALL if not i.critical]) is False
    assert is_critical([]) is False


def test_describe_suggested_and_reported() -> None:
    items = [BY_KEY["vulnerability.personal-crisis"], BY_KEY["critical.extremist-websites"]]
    assert describe(items, suggested=True) == (
        "Suggested from e-mail text (the DSP decides): More critical risk factors — Accessing "
        "extremist websites, especially those with a social networking element; "
        "Vulnerability — Personal crisis"
    )
    assert describe(items[:1], suggested=False) == "Reported: Vulnerability — Personal crisis"
    assert describe([], suggested=True) == ""
    assert describe(items + items, suggested=False).count("Personal crisis") == 1


def test_groups_of_is_distinct_and_in_policy_order() -> None:
    items = [
        BY_KEY["critical.extremist-websites"],
        BY_KEY["vulnerability.criminality"],
        BY_KEY["vulnerability.identity-crisis"],
        BY_KEY["experiences.criminal-history"],
    ]
    assert groups_of(items) == [
        "Vulnerability",
        "Experiences, behaviours and influences",
        "More critical risk factors",
    ]
    assert groups_of([]) == []


# ---------------------------------------------------------------------------- suggestions


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("He has been watching ISIS videos at break time.", "critical.extremist-websites"),
        ("She told me she visits extremist websites every night.", "critical.extremist-websites"),
        ("He showed a beheading video to other learners.", "critical.extremist-websites"),
        ("A man online has been trying to recruit him.", "critical.extremist-recruiters"),
        (
            "She said a far-right group wants to recruit apprentices.",
            "critical.extremist-recruiters",
        ),
        (
            "He keeps talking about the far right and a coming race war.",
            "critical.supports-extremist-causes",
        ),
        ("He praised ISIS in class.", "critical.supports-extremist-causes"),
        ("He drew swastikas on his folder.", "critical.supports-extremist-causes"),
        ("She said violence is the only answer to immigration.", "critical.justifies-violence"),
        (
            "He tried to justify the use of violence against the police.",
            "critical.justifies-violence",
        ),
        ("He wants to join the Islamic State.", "critical.joined-extremist-organisation"),
        (
            "She said she has signed up to a neo-Nazi group.",
            "critical.joined-extremist-organisation",
        ),
        (
            "He brought in extremist literature and a Nazi flag.",
            "critical.possesses-extremist-literature",
        ),
        (
            "There has been a sudden change in his behaviour.",
            "critical.changed-appearance-behaviour",
        ),
        ("She has changed her appearance completely.", "critical.changed-appearance-behaviour"),
        (
            "He said the terror attack was a good thing and celebrated the attacks.",
            "experiences.supports-terrorist-attacks",
        ),
        ("She has a new group of friends and seems isolated.", "vulnerability.personal-crisis"),
        ("He has low self-esteem since the family breakdown.", "vulnerability.personal-crisis"),
        ("He says he doesn't belong anywhere.", "vulnerability.identity-crisis"),
        ("She feels a strong sense of injustice.", "vulnerability.unmet-aspirations"),
        ("He was recently released from prison.", "vulnerability.criminality"),
        ("He has a criminal record.", "experiences.criminal-history"),
        (
            "His asylum claim is still waiting for a Home Office decision.",
            "experiences.immigration-decision-pending",
        ),
        ("He was the victim of a hate crime last month.", "experiences.hate-crime-victim"),
        ("She has been handing out racist leaflets.", "influences.extremist-material"),
        ("He is in a private Telegram group with older men.", "influences.closed-network-groups"),
        ("He spends time with known extremists.", "influences.associates-with-extremists"),
        ("He was using a fake passport.", "experiences.fraudulent-identity"),
        ("She was thrown out by her family.", "experiences.group-rejection"),
        ("He plans an extended trip abroad to Syria.", "experiences.travel-to-extremist-locations"),
        ("He has experienced racism at work.", "experiences.disadvantage-discrimination"),
        ("He is very upset by the war in Gaza.", "experiences.international-events"),
        ("Migration and community tensions in the area.", "vulnerability.personal-circumstances"),
    ],
)
def test_suggestions_from_invented_texts(text: str, key: str) -> None:
    assert BY_KEY[key] in suggest_from_text(text)


@pytest.mark.parametrize("item", ALL, ids=lambda i: i.key)
def test_the_policys_own_wording_suggests_each_item(item: Indicator) -> None:
    assert item in suggest_from_text(f"{item.label}: {item.description}")


def test_multi_line_and_optional_space_patterns() -> None:
    found = suggest_from_text("He was rejected\nby his family. She is distanced from her faith.")
    assert BY_KEY["experiences.group-rejection"] in found
    assert BY_KEY["vulnerability.identity-crisis"] in found


def test_explain_shows_the_matched_words() -> None:
    (suggestion,) = explain("Concern: watching   ISIS\nvideos on his phone.")
    assert suggestion.indicator.key == "critical.extremist-websites"
    assert suggestion.matched == "watching ISIS videos"


@pytest.mark.parametrize(
    "text",
    [
        "Bullying concern: a learner was called names and pushed in the corridor. He was upset "
        "and crying, and says it has happened before. I have spoken to both learners.",
        "Attendance has dropped and she seems tired. Her mum says they are moving house.",
        "He made a rude comment about a teacher's weight and refused to apologise.",
        "Please can the recruitment team call the apprentice's employer about his contract.",
        "He changed the style of his report as asked and the behaviour chart is up to date.",
        "She goes by a different name now and would like the register updated.",
    ],
)
def test_ordinary_concerns_suggest_nothing_critical(text: str) -> None:
    assert not is_critical(suggest_from_text(text))


def test_bullying_concern_suggests_nothing_at_all() -> None:
    assert suggest_from_text("Bullying: called names, pushed, upset, crying after class.") == []


def test_simple_negation_guard() -> None:
    assert suggest_from_text("There is no evidence he has accessed extremist websites.") == []
    assert suggest_from_text("No concerns about extremist websites.") == []
    # The guard ends at the clause: over-alerting is the safe side.
    assert BY_KEY["critical.extremist-websites"] in suggest_from_text(
        "No concerns about attendance, but he has been watching ISIS videos."
    )
    # A later, un-negated mention still counts.
    assert BY_KEY["critical.extremist-websites"] in suggest_from_text(
        "No evidence of extremist websites at first. Then he showed me ISIS videos."
    )
    # Plain "not" is not a guard: the DSP decides.
    assert BY_KEY["critical.extremist-websites"] in suggest_from_text(
        "I am not sure, but he was watching ISIS videos."
    )


def test_word_boundaries_and_case() -> None:
    assert suggest_from_text("WATCHING ISIS VIDEOS") == [BY_KEY["critical.extremist-websites"]]
    assert suggest_from_text("crisisvideos and isisvideos") == []


def test_only_the_start_of_a_huge_text_is_scanned() -> None:
    filler = "Nothing of note happened today. " * (MAX_SCAN_CHARS // 32 + 10)
    assert suggest_from_text(filler + "He watches ISIS videos.") == []
    assert suggest_from_text("He watches ISIS videos. " + filler * 25)  # 5 MB, found at once


def test_suggestions_are_in_policy_order_without_duplicates() -> None:
    found = suggest_from_text(
        "Watching ISIS videos, isolated, new group of friends, ISIS videos again, criminal record."
    )
    assert found == sorted(set(found), key=list(ALL).index)
    assert all(isinstance(i, Indicator) for i in found)
