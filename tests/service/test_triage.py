"""The triage matcher and its knowledge file: inflections, phrases across words, negation,
discussion context, immediate danger, explanations, and clear errors for bad data.

Inputs are invented here and are not taken from bench/triage/ (the evaluation set).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.indicators import BY_KEY, assess, check_rules, suggest_from_text
from service.triage import KNOWLEDGE_FILE, KnowledgeError, knowledge
from service.triage.engine import load_knowledge, normalise, stem


def keys(text: str) -> set[str]:
    return {i.key for i in suggest_from_text(text)}


def critical(text: str) -> bool:
    return any(i.critical for i in suggest_from_text(text))


def rules_critical(text: str) -> bool:
    """The rules alone. The learned layer beside them (tests/service/test_triage_learned.py)
    may still flag a hard negative the rules keep quiet on: its false alarms on unseen text
    are measured by `bench_triage.py --lofo`, and over-alerting is the safe side."""
    return any(s.indicator.critical for s in assess(text, learned=False).suggestions)


# ---------------------------------------------------------------------------- the words


@pytest.mark.parametrize(
    "forms",
    [
        ("bomb", "bombs", "bombed", "bombing"),
        ("praise", "praised", "praises", "praising"),
        ("radicalise", "radicalised", "radicalized", "radicalising", "radicalizing"),
        ("stab", "stabbed", "stabbing", "stabs"),
        ("glorify", "glorified", "glorifies"),
        ("behaviour", "behavior"),
        ("didn't", "doesn't", "won't", "not"),
        ("nasheed", "nasheeds"),
        ("agree", "agreed", "agrees", "agreeing"),
        ("bombing", "bombings"),
        ("fly", "flies", "flied"),
    ],
)
def test_inflections_and_spellings_share_one_stem(forms: tuple[str, ...]) -> None:
    assert len({stem(f) for f in forms}) == 1


def test_a_word_is_never_matched_inside_another() -> None:
    assert not critical("The isisfan account and a crisisvideo were spam.")
    assert normalise("far-right") == ["far", "right"]


@pytest.mark.parametrize(
    "text",
    [
        "Morgan reckons the bomber who blew up the arena was an absolute legend.",
        "Morgan keeps praising the Buffalo shooter in the group chat.",
        "Morgan said the only language the government understands is bombing.",
        "Morgan told me he wants to travel to Syria to fight for Islamic State.",
        "Morgan has a Wolfsangel patch sewn on his coat.",
        "Morgan has been SHARING Sonnenkrieg Division posts on his story.",
        "Morgan said Jews deserve to be wiped out.",
    ],
)
def test_phrases_in_staff_words_suggest_a_critical_factor(text: str) -> None:
    assert critical(text), text


def test_copycat_words_need_an_attack_in_the_sentence() -> None:
    assert critical(
        "She said the driver who ran over those people was brave and others should do the same."
    )
    assert not critical("She said her sister passed the exam and she wants to do the same.")


# ---------------------------------------------------------------------------- negation, context


def test_a_negation_just_before_cancels_and_a_later_mention_counts() -> None:
    assert not critical("Morgan would never support Islamic State.")
    assert not critical("Morgan doesn't think violence is ever justified.")
    assert not critical("He said violence is never the answer.")  # a gap never skips "never"
    assert critical("Morgan would never say so to staff, but he supports Islamic State.")


def test_no_evidence_opening_the_clause_cancels_until_the_clause_ends() -> None:
    assert not critical("There is no evidence that Morgan supports Islamic State.")
    assert critical("No concerns about attendance, but Morgan praised the Manchester bomber.")


def test_a_lesson_or_the_news_mutes_mere_mentions_but_never_a_stance() -> None:
    assert not critical("In citizenship we looked at Sonnenrad and Totenkopf imagery online.")
    assert not critical("We discussed the news. Sonnenrad flags were seen at the rally.")
    assert critical("In the lesson Morgan said the Christchurch gunman was a hero.")
    assert critical("Morgan has a Sonnenrad tattoo on his arm.")


# ---------------------------------------------------------------------------- immediate danger


@pytest.mark.parametrize(
    "text",
    [
        "Learner is carrying a machete in his coat.",
        "He said he is going to shoot up the mosque on Friday.",
        "She says she will burn down the asylum hotel tonight.",
        "He has booked a flight for Thursday and will cross into Syria to join them.",
        "She told her friend she has taken tablets and wants to end it all.",
    ],
)
def test_immediate_danger_from_the_words(text: str) -> None:
    assert assess(text).danger, text


@pytest.mark.parametrize(
    "text",
    [
        "Catering learners were shown how to sharpen a chef's knife safely.",
        "He said he will kill it in the exam tomorrow.",
        "We read an article about knife crime in the city.",
        "She is going to Sudan next week to visit her grandmother.",
    ],
)
def test_no_danger_from_ordinary_words(text: str) -> None:
    assert not assess(text, learned=False).danger, text


# ---------------------------------------------------------------------------- explanations


def test_each_suggestion_says_which_words_and_which_rule_and_source() -> None:
    result = assess("Yesterday Jamie said that\nthe Christchurch gunman was a hero, word for word.")
    [first] = [s for s in result.suggestions if s.indicator.critical]
    assert first.matched == "Christchurch gunman was a hero"
    assert first.explanation == f"'Christchurch gunman was a hero' → {first.indicator.label}"
    assert first.rule in {r.id for r in knowledge().rules} and first.source


def test_a_blank_line_ends_a_phrase_but_a_wrapped_line_does_not() -> None:
    assert critical("He praised Islamic\nState.")
    assert not critical("He praised\n\nIslamic State was on the news.")


# ---------------------------------------------------------------------------- the data


def test_every_rule_and_class_names_a_source_and_real_indicators() -> None:
    known = knowledge()
    assert {r.source for r in known.rules} <= set(known.sources)
    named = {k for r in known.rules for k in r.indicators}
    assert named - {"danger"} <= set(BY_KEY) and "danger" in named
    assert all(text.strip() for text in known.sources.values())


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "knowledge.toml"
    path.write_text(
        '[sources]\ns = "a source"\n[classes]\nc = { source = "s", phrases = ["x y"] }\n' + body
    )
    return path


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            'id = "r"\nindicators = ["danger"]\nsource = "s"\npatterns = ["a {nope}"]',
            "unknown class {nope}",
        ),
        (
            'id = "r"\nindicators = ["danger"]\nsource = "t"\npatterns = ["a"]',
            "source 't' is not in [sources]",
        ),
        (
            'id = "r"\nindicators = ["danger"]\nsource = "s"\npatterns = [".. a"]',
            "must start with a word",
        ),
        (
            'id = "r"\nindicators = ["danger"]\nsource = "s"\npatterns = ["a .."]',
            "must end with a word",
        ),
        (
            'id = "r"\nindicators = ["danger"]\nsource = "s"\npattern = ["a"]',
            "unknown keys ['pattern']",
        ),
        (
            'id = "r"\nindicators = ["danger"]\nsource = "s"\npatterns = ["a"]\nneeds = ["{zz}"]',
            "unknown class {zz}",
        ),
    ],
)
def test_a_mistake_in_the_knowledge_file_names_the_file_and_rule(
    tmp_path: Path, rule: str, message: str
) -> None:
    path = write(tmp_path, f"[[rule]]\n{rule}\n")
    with pytest.raises(KnowledgeError, match="rule r") as err:
        load_knowledge(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_small_knowledge_file_works_end_to_end(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[language]\nnegators = ["not"]\ndiscussion_cues = ["lesson"]\n'
        '[[rule]]\nid = "r"\nindicators = ["danger"]\nsource = "s"\nmention = true\n'
        'patterns = ["{c} .. z"]\n',
    )
    known = load_knowledge(path)
    assert [f.matched for f in known.find("Then X Y did Z.")] == ["X Y did Z"]
    assert known.find("Then not X Y did Z.") == []
    assert known.find("In the lesson X Y did Z.") == []


def test_the_shipped_file_is_the_package_data_file() -> None:
    assert KNOWLEDGE_FILE.name == "knowledge.toml" and KNOWLEDGE_FILE.is_file()


def test_one_danger_sign_per_stretch_of_words() -> None:
    danger = assess("Kit has a blade in his rucksack and says he will stab Lou tomorrow.").danger
    assert [d.matched for d in danger] == ["has a blade", "will stab"]


def test_a_long_run_without_full_stops_is_read_in_pieces_and_still_matches() -> None:
    filler = "and then we talked about the timetable " * 40  # 280 words, no full stop
    text = f"{filler} Morgan praised the Buffalo shooter {filler} he has a knife in his coat"
    result = assess(text)
    assert any(s.indicator.critical for s in result.suggestions)
    assert [d.matched for d in result.danger] == ["has a knife"]


def test_repeated_text_finds_what_one_copy_finds() -> None:
    once = "In the lesson we read about Sonnenrad flags. Morgan praised Islamic State. "
    assert [(s.indicator, s.matched) for s in assess(once * 500).suggestions] == [
        (s.indicator, s.matched) for s in assess(once).suggestions
    ]
    assert critical(once * 500)


def test_a_rule_naming_an_indicator_the_policy_lacks_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[rule]]\nid = "r"\nindicators = ["critical.typo"]\nsource = "s"\npatterns = ["a"]\n',
    )
    with pytest.raises(KnowledgeError, match=r"rule r: unknown indicator 'critical\.typo'"):
        check_rules(load_knowledge(path))
    check_rules(knowledge())  # the shipped file is fine


def test_praise_for_an_attack_needs_more_than_the_word_attack() -> None:
    assert not rules_critical("He loves Arsenal and said their attack was brilliant on Saturday.")
    assert critical("He said the attack on the gurdwara was brilliant.")
    assert critical("He said the attack was justified.")


# ---------------------------------------------------------------------------- second round


def test_words_near_a_pattern_count_in_either_order_and_the_finding_spans_both() -> None:
    [first] = [
        s
        for s in assess("Morgan says the Hanau shooter did what had to be done.").suggestions
        if s.rule == "glorifies-attacker-near" and s.indicator.critical
    ]
    assert first.matched == "Hanau shooter did what had to be done"
    assert critical("Morgan honestly stans the Plymouth shooter.")
    assert not rules_critical("Morgan says the Hanau shooter was not a legend.")  # negated near
    assert not rules_critical("The officers who stopped the Hanau shooter were heroes.")


def test_text_speak_and_one_letter_typos_are_read_as_the_word() -> None:
    assert critical("morgan sed the isis bruvs r legends")
    assert critical("Morgan keeps watching beheeding videos at break.")
    assert critical("Morgan drew a swastica on the desk.")
    known = knowledge()
    # a word the file uses in its own right is never read as a typo of another
    assert known.stem("extremism") != known.stem("extremist")
    assert known.stem("Extremisn") == known.stem("extremist")


def test_emoji_are_words() -> None:
    assert normalise("bio: \u26a1\u26a1 88") == ["bio", "\u26a1", "\u26a1", "88"]
    assert critical("Morgan changed his bio to \u26a1\u26a1 last week.")


def test_a_weapon_near_a_group_or_place_of_worship_is_danger_and_critical() -> None:
    result = assess("Morgan ordered a machete and says it is for the Muslims at the mosque.")
    assert result.danger and any(s.indicator.critical for s in result.suggestions)
    assert not assess(
        "The police knife-crime workshop showed machetes to the Muslims' youth club."
    ).danger


def test_an_insult_or_a_lesson_is_not_a_stance() -> None:
    assert not critical("Morgan said the council is fascist for closing the library.")
    assert not critical("The class debated whether the Easter Rising bombings were justified.")
    assert critical("Morgan said the Easter Rising bombings were justified.")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'id = "r"\nindicators = ["danger"]\nsource = "s"\npatterns = ["a"]\nnear = ["x"]',
            "near must be a list of lists",
        ),
        (
            'id = "r"\nindicators = ["danger"]\nsource = "s"\npatterns = ["a"]\n'
            'near = [["x"]]\nwindow = 99',
            "window must be",
        ),
    ],
)
def test_a_mistake_in_near_names_the_rule(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, f"[[rule]]\n{body}\n")
    with pytest.raises(KnowledgeError, match="rule r") as err:
        load_knowledge(path)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[spelling]\nsource = "nope"\nwords = { u = "you" }\n', "unknown source"),
        ('[spelling]\nsource = "s"\nwords = { u = "you all" }\n', "must be respelt as one word"),
        ('[language]\nfuzzy = ["bomb"]\n', "must be one word of 7+ letters"),
    ],
)
def test_a_mistake_in_spelling_or_fuzzy_names_the_file(
    tmp_path: Path, table: str, message: str
) -> None:
    path = write(tmp_path, table)
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_spelling_and_near_work_end_to_end_in_a_small_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[spelling]\nsource = "s"\nwords = { xx = "x" }\n'
        '[language]\nfuzzy = ["zebracorn"]\nnegators = ["not"]\n'
        '[[rule]]\nid = "r"\nindicators = ["danger"]\nsource = "s"\n'
        'patterns = ["zebracorn"]\nnear = [["{c}"]]\nwindow = 3\n',
    )
    known = load_knowledge(path)
    assert [f.matched for f in known.find("A zebracorn then xx y.")] == ["zebracorn then xx y"]
    assert [f.matched for f in known.find("x y, a zebrakorn.")] == ["x y, a zebrakorn"]
    assert known.find("A zebracorn and then much later x y.") == []  # out of the window
    assert known.find("A zebracorn, not x y.") == []  # the near words are negated


def test_some_rules_read_a_sentence_with_the_one_before_but_not_across_a_blank_line() -> None:
    text = "Morgan keeps bringing up the Hanau shooter. Today he said the man was a legend."
    [first] = [s for s in assess(text).suggestions if s.indicator.critical]
    assert first.matched == "Hanau shooter. Today he said the man was a legend"
    assert not critical(
        "Morgan keeps bringing up the Hanau shooter.\n\nAt five-a-side he was a legend."
    )
    # a stance is a stance even after a lesson sentence
    assert critical("We discussed the Hanau shooter in the lesson. Morgan said he was a legend.")


def test_a_bare_name_counts_only_where_nothing_more_specific_does() -> None:
    assert keys("Morgan keeps talking about Atomwaffen.") == {"critical.supports-extremist-causes"}
    assert keys("Morgan was watching ISIS videos.") == {"critical.extremist-websites"}
    assert not critical("Morgan's family fled ISIS in 2015.")
    assert not critical("In the lesson we looked at how Atomwaffen recruits online.")


def test_dehumanising_a_group_or_wishing_it_dead() -> None:
    assert critical("Morgan said the migrants in the hotel are vermin.")
    assert not critical("Morgan said the rats in the shed are filthy vermin.")
    assert critical("Morgan said he hopes they all get killed, about the families in the camp.")
    assert not critical("Morgan said he hopes they are all safe now.")


def test_a_lesson_in_the_rest_of_the_sentence_mutes_a_mere_mention() -> None:
    assert not critical("Morgan asked why Atomwaffen recruits teenagers; we discussed grooming.")
    assert critical("Morgan asked to join Atomwaffen; he would not say why.")


def test_letters_then_digits_are_two_words() -> None:
    assert normalise("WhitePower1488 4chan 2nite") == ["whitepower", "1488", "4chan", "2nite"]
    assert critical("His gamer tag is Morgan1488.")


# ------------------------------------------------------------------------ false alarms, new wording
# Hard negatives from the first run of tuning13-17.toml, in new words written here, each with
# worrying twins that must stay critical (rules alone: the learned layer is measured apart).

# Threats to one person (a stepdad, a sister, a manager) and figures of speech are danger at
# most, not a critical factor; "again" is not praise; a game's "kill them all" is a game's; a
# lesson "planning to use" a clip of an attack plans nothing. A place or group threatened stays
# critical.


@pytest.mark.parametrize(
    "text",
    [
        "He said his dad will kill him if he fails his driving test again.",
        "She joked she'd murder her brother if he ate her chips again.",
        "If his stepdad hits his mum again he says he'll stab him.",
        "My manager is going to kill me if I'm late again, she laughed.",
        "He said he'd kill the lad who keeps taking his phone, at the bus stop after college.",
        "Her ex said he'll kill her if she goes to the police.",
        "Her uncle said he'll kill her if she talks to the police about it.",
        "The lads were shouting 'kill them all' at the Xbox during a Call of Duty match.",
        "Someone posted 'kill them all' about the rival team before the esports final.",
        "He kept yelling kill them all at the lobby while playing Fortnite.",
        "She said she'd blow the place up if her wages were late again, joking.",
        "He joked he'd blow the place up if the printer jammed one more time.",
        "He phoned in this morning to say he can't come in today because his car broke down.",
        "The tutor is planning to use a news clip of the mosque attack in Thursday's lesson.",
        "Students will be researching the Southport attack for their criminology unit.",
        "He said he would stab his brother again if he touched his Xbox.",
        "She said she could kill her sister for borrowing her coat again.",
    ],
)
def test_a_threat_to_one_person_a_figure_of_speech_or_a_game_is_not_a_critical_factor(
    text: str,
) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "He said he will bomb the mosque on Friday.",
        "He is going to burn down the asylum hotel.",
        "He said the traitors in Parliament will hang.",
        "He said the Manchester bombing should happen again.",
        "He says all Muslims should be killed.",
        "He is planning to attack the synagogue after prayers.",
        "He says he will shoot up the college tomorrow.",
        "He said they are going to kill all the immigrants at the hotel.",
        "He said he will stab the Muslim lads at the gates.",
        "He said the gays will all be shot when the time comes.",
        "He said we will do what the lads did in Southport.",
    ],
)
def test_a_threat_to_a_place_or_group_stays_critical(text: str) -> None:
    assert rules_critical(text), text


# An older contact, secrecy or grooming for county lines, sexual exploitation, a debt or a forced
# marriage is a safeguarding worry but not an extremist recruiter; being groomed in the news or a
# speaker's story is a mention. With an extremist word it stays critical.


@pytest.mark.parametrize(
    "text",
    [
        "An older man on Snapchat tells her she is mature for her age and keeps asking to meet.",
        "Older lads pick him up in a car after college and he says he is doing runs for them.",
        "A man she met online sends her money and asks for pictures, likely sexual grooming.",
        "Someone older keeps messaging him about the gambling debt he owes.",
        "She begged us not to tell her parents that she is being taken abroad to be married.",
        "He owes money to an older lad who keeps messaging him every night.",
        "Older men are buying her alcohol and she stays out overnight with them.",
        "A grown man messages her on Instagram and wants to meet, police think it's sextortion.",
        "He is being groomed into county lines by an older dealer.",
        "The teenager on the news had been groomed online, and the class felt sorry for him.",
        "Our visiting speaker gives talks in schools about how he was groomed as a teenager.",
        "In the lesson we talked about how the Southport attacker had been groomed online.",
    ],
)
def test_other_exploitation_is_not_extremist_recruitment(text: str) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "An older man on Telegram keeps messaging him about joining the brothers and to meet.",
        "A man in his thirties from a Discord server sends her ISIS videos and asked to meet.",
        "He told me he is being groomed by an older man from National Action.",
        "An older guy told him to keep it secret from his parents and sends him nazi videos.",
        "He is being groomed online by someone who sends him sermons about hijrah.",
        "A man he met on a gaming server wants to meet him and told him not to tell his parents.",
        "Her older boyfriend on Telegram says the caliphate is the only true way, wants to meet.",
        "She said an older woman online has been grooming her to marry a fighter.",
    ],
)
def test_an_older_contact_with_an_extremist_word_stays_recruitment(text: str) -> None:
    assert rules_critical(text), text


# Words that are also ordinary: a scale model's or a Hindu swastika, a Celtic cross from a
# grave, Army Reserve training weekends, bath bombs, a filter that "flagged" a search, gun laws,
# a game, a source analysis or art project. Their extremist twins stay critical.


@pytest.mark.parametrize(
    "text",
    [
        "His Airfix model planes have swastikas on the tails; he builds WW2 kits.",
        "She drew a Hindu swastika in her rangoli for Diwali.",
        "He has a Celtic cross tattoo copied from his Irish nan's headstone.",
        "He wears a Celtic cross necklace that was his grandad's, he's Catholic.",
        "He asked for time off for his Army Reserve training weekends.",
        "The cadets have training weekends in the Brecon Beacons this term.",
        "The filter flagged 'how to make a bomb' but it was bath bombs for her enterprise stall.",
        "The web filter flagged her 'Christchurch' searches; she is planning a trip to NZ.",
        "IT flagged his searches about the Christchurch earthquake.",
        "The session compared New Zealand's gun laws before and after the mosque attack.",
        "She asked in RS what jihad actually means.",
        "Her source analysis uses a copy of Mein Kampf from the history department.",
        "His source analysis is on Nazi propaganda posters.",
        "Their WW2 video game has you shoot Nazi soldiers on the beaches.",
        "He plays a WW2 game where you fight the Nazis.",
        "Her art project about the Holocaust uses Nazi imagery to show what happened.",
        "Some students want to ask their MP about the proscription of Palestine Action.",
        "He wants to join the army, talks about guns a lot and plays airsoft at weekends.",
        "Staff CPD today: the trainer showed examples of far-right memes and coded numbers.",
        "Web filter hit for 'how to make a bomb' from her login: bath bombs for a stall, closing.",
    ],
)
def test_an_ordinary_meaning_or_a_study_of_the_word_is_not_a_critical_factor(text: str) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "He has swastikas drawn all over his planner.",
        "He shaved his head and has a Celtic cross tattoo and a 1488 patch.",
        "He has a Celtic cross tattoo and says he is in the movement now.",
        "He goes to training weekends with Patriotic Alternative.",
        "He searched how to make a pipe bomb.",
        "IT flagged him watching ISIS beheading videos.",
        "He says jihad against the kuffar is a duty.",
        "He keeps a copy of Mein Kampf and says Hitler was right.",
        "He says Palestine Action are heroes and he wants to join them.",
        "He drew a swastika and SS runes on his model planes and says Hitler was a genius.",
        "He wants to join the army so he can kill Muslims.",
        "He said he would join the army and shoot all the immigrants.",
        "At the gym his trainer showed him far-right memes and he shares them.",
        "He plays games online every night with lads from National Action.",
        "He said we should kill all the Zionist lobby.",
    ],
)
def test_the_same_words_used_as_extremist_ones_stay_critical(text: str) -> None:
    assert rules_critical(text), text


# The learner as the target (called "ISIS", a swastika sprayed on her car or sent to her), a
# victim of the group, or a relative's past: not the learner's stance. The learner doing the
# same stays critical.


@pytest.mark.parametrize(
    "text",
    [
        "Amir keeps getting called ISIS by the lads at his placement.",
        "He gets called a terrorist by the other apprentices and it upsets him.",
        "She has been called a nazi by a customer because she is German.",
        "Someone sprayed a swastika on her car in the staff car park.",
        "Somebody drew a swastika on his locker while he was at lunch.",
        "She was sent a swastika meme by an account she doesn't know.",
        "He was sent a message with SS runes after posting about his Bar Mitzvah.",
        "He saw the Taliban kill his father and has nightmares.",
        "She has flashbacks since ISIS killed her brother.",
        "His dad did time for IRA stuff in the 80s and he wants nothing to do with it.",
        "His grandad got ten years for UVF stuff during the Troubles.",
    ],
)
def test_the_learner_as_the_target_or_the_victim_is_not_a_critical_factor(text: str) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "He drew a swastika on her car.",
        "He sent her a swastika meme and said Hitler was right.",
        "He says the Taliban are heroes.",
        "He says the IRA were legends and he wants to join the New IRA.",
        "He calls the Muslim lads ISIS and says ISIS are the only true Muslims.",
        "He sprayed 1488 on the mosque wall.",
    ],
)
def test_the_learner_doing_it_stays_critical(text: str) -> None:
    assert rules_critical(text), text


# Someone else's label ("a customer complained it was 'IRA music'", "another coach asked if
# it's a neo-Nazi code", a web filter's hit) that the reporter denies: a mere mention in that
# sentence or the one before is left out. Not when only the learner denies it, never a stance.


@pytest.mark.parametrize(
    "text",
    [
        "A customer complained that her keffiyeh means she supports terrorists. "
        "She has never said anything like that.",
        "Another apprentice told him he 'supports terrorism' because of his badge. "
        "He is upset about being labelled.",
        "A visitor asked me if her calligraphy was the ISIS flag. "
        "It absolutely isn't, it's the shahada for her nan.",
        "A parent complained the drill track was 'terrorist music'. "
        "No concerns from me, it's in the brief.",
        "Someone complained to reception about his 'IRA stuff'. It's a GAA shirt. Not a concern.",
        "His gamertag is Wolf_88. "
        "Another coach asked if it's a neo-Nazi code; it's his shirt number, a misunderstanding.",
        "A colleague thought his Thor's hammer was a nazi symbol. He is openly anti-racist.",
        "The web filter flagged 'Hamas recruitment' searches. "
        "Her tutor confirms it's for her essay on propaganda.",
        "Web filter hits for 'jihad meaning' from an RS learner: a false positive, closing it.",
        "A supply teacher reported them as 'Nazi drawings': WW2 planes. "
        "His SENCo says it's historical accuracy.",
        "A visitor complained that the Palestine flag is 'extremist propaganda'. "
        "Not a concern, it's a national flag.",
        "Two girls keep saying she's a terrorist since she started wearing the hijab. "
        "It's not true and she is the victim here.",
    ],
)
def test_someone_elses_label_the_reporter_denies_is_not_a_critical_factor(text: str) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Another learner complained that he drew a swastika on his desk. Nothing else of concern.",
        "A colleague complained he keeps watching ISIS videos at lunch. No other concerns.",
        "A customer complained that the apprentice plays nazi music about gassing Jews in the van.",
        "Another student told her she supports Hamas. "
        "She said nothing like that, but later told me the October 7 attackers were heroes.",
        "A classmate complained he said the Christchurch shooter was a hero. "
        "Not a concern, he says, but I disagree.",
        "His mum asked me if it's normal that he watches beheading videos. It is not.",
        "The web filter flagged him searching 'how to join ISIS'. "
        "His tutor confirmed he has been talking about it.",
        "A colleague complained he has a Hamas flag as his lock screen. "
        "He says it's not a concern.",
        "Another learner complained he said all Muslims should be gassed. "
        "It's not true that he was joking.",
    ],
)
def test_a_label_not_denied_by_the_reporter_or_a_stance_beside_it_stays_critical(text: str) -> None:
    assert rules_critical(text), text


# "No extremist material", "anti-fascist", "counter-terrorism"; the learner or their family
# harmed by the group named; the learner condemning it ("said the shooter was evil").


@pytest.mark.parametrize(
    "text",
    [
        "He has ACAB and anti-fascist stickers on his laptop.",
        "Mum checked his phone and there's no extremist material on it.",
        "The Discord is moderated and has no nazi content at all.",
        "He went on a counter-terrorism awareness course with the army cadets.",
        "She volunteers with an anti-racist and anti-fascist youth group.",
        "She wants a job in counter-extremism after her degree.",
        "No extremist content was found when IT checked his account.",
        "She saw ISIS kill her uncle and has flashbacks at loud bangs.",
        "He talks about the Taliban killing his father and has nightmares.",
        "He said the Christchurch shooter was evil and he hopes he rots.",
        "She said the Southport attacker was a monster and cried for the girls.",
        "He said the Hamas attack on the festival was sickening.",
        "He called the National Action lads cowardly and pathetic.",
        "The lads keep calling him Bin Laden because of his beard.",
        "She gets called a jihadi bride at work and it upsets her.",
        "Someone wrote 'ISIS' and a swastika on his locker.",
        "Somebody painted a swastika on the family's front door.",
        "He was sent a Hitler meme by a stranger and reported it.",
        "Her uncle was killed by the IRA when she was small.",
        "No nazi flags were found in his room when it was searched.",
        "He's doing a counter-extremism project for the Duke of Edinburgh award.",
        "She said the Manchester Arena bomber was a coward and cried.",
        "He was horrified by the Southport attacker and went to the vigil.",
    ],
)
def test_no_anti_counter_a_victim_or_a_condemnation_is_not_a_critical_factor(text: str) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "He has no problem with nazi flags and put one up in his room.",
        "He posts anti-Jewish nazi propaganda in the group chat.",
        "He has extremist material on his laptop and no remorse.",
        "He says the Taliban were right to kill the infidels.",
        "He said the Christchurch shooter was a hero and the police were cowards.",
        "He shares Christchurch shooter memes, which is disgusting.",
        "He said the victims were evil and the Southport attacker did what had to be done.",
        "He watches ISIS execution videos and laughs.",
        "He keeps calling the Muslim lads ISIS and says they should be bombed.",
        "He painted a swastika on the family's front door.",
        "He sent a Hitler meme to the group and said Hitler was right.",
        "He says the Manchester Arena bomber was a hero.",
    ],
)
def test_the_same_names_held_or_praised_stay_critical(text: str) -> None:
    assert rules_critical(text), text


def test_a_denied_label_is_left_out_but_a_later_match_of_the_same_rule_counts() -> None:
    denied = "A customer complained it was 'IRA music'. Not a concern."
    later = " A week later he was sharing ISIS propaganda videos."
    assert not rules_critical(denied)
    found = {s.rule: s.matched for s in assess(denied + later, learned=False).suggestions}
    assert found["policy-extremist-websites"] == "sharing ISIS propaganda"
    # without the reporter's denial the label is kept, as the first match
    found = {s.rule: s.matched for s in assess(denied[:-16] + later, learned=False).suggestions}
    assert found["policy-extremist-websites"] == "IRA music"


# ---------------------------------------------------------------------------- the knowledge lists
# Sentences written here for entries added from public lists (issue 11): a name counts when it
# is praised, joined, worn or shared, and stays quiet when it is only named in a lesson, an
# essay or the news.


@pytest.mark.parametrize(
    "text",
    [
        "Morgan says the Maniacs Murder Cult are legends and he wants to join them.",
        "Morgan keeps sharing Qassam Brigades clips in the group chat.",
        "Morgan has a Tamil Tigers flag as his lock screen.",
        "Morgan told a mate he wants to go and fight with the Wagner Group.",
        "Morgan's gamer tag has Feuerkrieg in it.",
        "Morgan said Oglaigh na hEireann are the real patriots.",
    ],
)
def test_proscribed_groups_from_the_whole_list_count(text: str) -> None:
    assert rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "In history we covered the Provisional IRA and the peace process.",
        "We discussed the news that Palestine Action had been proscribed.",
        "Morgan's grandparents fled the Tamil Tigers when his mum was a baby.",
        "The car has AWD and Morgan's provisional licence is in the glovebox.",
    ],
)
def test_proscribed_names_in_a_lesson_the_news_or_family_history_stay_quiet(text: str) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Morgan told a girl who turned him down that there will be another Hungerford.",
        "Morgan said he wants to do a Westminster with his dad's van.",
        "Morgan keeps saying he's going to pull a Utoya on the college.",
        "Morgan said the Dunblane guy had the right idea.",
        "Morgan posted that the Poway shooter is a saint.",
        "Morgan reckons someone should do to them what happened in Halle.",
        "Morgan wants to do what the Tree of Life shooter did.",
        "Morgan said al-Aqsa Flood was glorious.",
        "Morgan said the Isla Vista killings were glorious.",
    ],
)
def test_attacks_named_by_place_or_used_as_a_verb_count(text: str) -> None:
    assert rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "In history we learned about the Omagh bombing and the peace process.",
        "Morgan wrote an essay on how the Hungerford massacre changed firearms law.",
        "Gun laws changed so that there would never be another Dunblane.",
        "Morgan did a Paris trip at half term and loved it.",
        "Morgan said Barcelona's attack was brilliant last night.",
        "Morgan wants to be the next Plymouth striker when he's older.",
        "Morgan said the Toronto guy he games with is a legend at Fortnite.",
        "Morgan said the lads from Omagh were legends at the hurling.",
        "Morgan did a nice job on his brickwork today.",
        "Morgan loves Nottingham and says the castle is iconic.",
        "We did a Manchester run for the parts on Friday.",
        "Morgan wants to do a Norway cruise with his nan.",
        "Morgan supports the Buffalo Bills and loves the Buffalo boys.",
    ],
)
def test_attack_places_in_lessons_trips_and_sport_stay_quiet(text: str) -> None:
    assert not rules_critical(text), text


def test_a_named_attack_as_a_plan_with_a_day_is_danger() -> None:
    assert assess("Morgan said he'll do a Dunblane tomorrow.", learned=False).danger
    assert not assess("Morgan said someone should do a Dunblane one day.", learned=False).danger


@pytest.mark.parametrize(
    "text",
    [
        "Morgan has a printed copy of the Camp of the Saints in his bag and says it is the truth.",
        "Morgan keeps sending the Protocols of the Elders of Zion to the group chat.",
        "Morgan has been reading My Twisted World and says Elliot was right.",
        "Morgan watched Flames of War on his phone in the canteen.",
        "Morgan shared an Amaq video of the fighters on his story.",
        "Morgan spends every evening on Watch People Die.",
        "Morgan says Zarqawi was a hero.",
        "Morgan has a Patriot Front sticker on his laptop.",
        "Morgan said he wants to join the Azov Battalion and fight.",
        "Morgan keeps saying he is an ecofascist now.",
    ],
)
def test_texts_sites_ideologues_and_groups_from_the_lists_count(text: str) -> None:
    assert rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "In history we read extracts from the Protocols of the Elders of Zion to see how "
        "antisemitic forgeries spread.",
        "Morgan's essay on Himmler and Goebbels got a distinction.",
        "The news covered the Proud Boys leader's sentencing.",
        "Morgan talks about his inner jihad during Ramadan and prays five times a day.",
        "Morgan is learning about tawheed at the mosque on Saturdays.",
        "Morgan's uncle lives near the Sea of Azov.",
        "Morgan said the safeguarding protocols at placement are strict.",
    ],
)
def test_texts_and_faith_words_in_lessons_and_practice_stay_quiet(text: str) -> None:
    assert not rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Morgan has 6MWE written on his pencil case.",
        "Morgan says the Goyim know and laughs about it.",
        "Morgan runs a TCC account that posts edits of the Columbine boys.",
        "Morgan wore a Natural Selection t-shirt to placement.",
        "Morgan keeps posting remove kebab videos.",
        "Morgan has DOTR scratched into his desk.",
        "Morgan said the khilafah will return.",
        "Morgan keeps saying jews will not replace us.",
        "Morgan has a Kolovrat tattoo on his arm.",
    ],
)
def test_codes_slogans_and_symbols_from_the_glossaries_count(text: str) -> None:
    assert rules_critical(text), text


@pytest.mark.parametrize(
    "text",
    [
        "In biology we covered natural selection and Darwin.",
        "Morgan has been playing Siege with his cousins all weekend.",
        "Morgan wants a high score in the exam.",
        "Maria says she would love to be a saint like Mother Teresa one day.",
        "Morgan said the kebab shop on the high street is the best.",
        "The nurse asked Morgan to do a pulse check on the patient.",
        "Morgan said the new contract is the final nail in the coffin for his old job.",
        "Morgan had to do a bloody Sunday shift again.",
    ],
)
def test_everyday_words_near_the_codes_stay_quiet(text: str) -> None:
    assert not rules_critical(text), text


def test_northern_ireland_groups_described_without_a_name() -> None:
    assert rules_critical("Morgan says his cousins are in a dissident republican group.")
    assert rules_critical("Morgan is talking up the Continuity lot again.")
    assert not rules_critical("Morgan's grandad was killed by loyalist paramilitaries in 1976.")
    assert not rules_critical("On the Belfast trip we looked at paramilitary murals.")


# ---------------------------------------------------------------------------- warning behaviours
# Threats and attack leakage in plain words, with no ideology word (TRAP-18, NTAC): the rules
# alone must see a critical factor, and immediate danger where there is a time, place or target.


@pytest.mark.parametrize(
    ("text", "danger"),
    [
        (
            "Dylan told his mate that on Monday morning the whole science block would find out "
            "who he really is.",
            True,
        ),
        (
            "Rhys posted 'last day on earth for some of you lot, see you at 10 tomorrow' on the "
            "class group chat.",
            True,
        ),
        ("Keeley warned her best friend not to be in the library after lunch on Wednesday.", True),
        (
            "Owen has a list on his phone titled 'who goes first' with six names from his "
            "tutor group.",
            False,
        ),
        (
            "Since half term he turns up in a long black coat, dressed like the school shooters "
            "he watches.",
            False,
        ),
        (
            "Aiden has been saving up for a crossbow and says it is for the people in his maths "
            "class who laugh at him.",
            True,
        ),
        ("He wrote '5 days left' on his desk next to a drawing of the college and a gun.", True),
        (
            "Tom told a classmate you'll all see me on the telly after Friday, everyone at this "
            "college will.",
            True,
        ),
        ("Jess said she is going to make the whole sixth form pay for what they did.", False),
        (
            "Mark keeps asking the caretaker which doors are locked during assembly and when the "
            "fire exits are alarmed.",
            False,
        ),
        (
            "Leon said he would rather go out like the Columbine lads than keep coming to this "
            "college.",
            False,
        ),
        (
            "Kieran calls himself a warrior now and says his day is coming and the people in his "
            "year will regret everything.",
            False,
        ),
        (
            "Zak told the youth worker he has been practising with his dad's rifle and his old "
            "school won't be laughing much longer.",
            True,
        ),
        (
            "Maya said she has nothing left to lose and her tutor group will be the ones who "
            "suffer on Thursday.",
            True,
        ),
        (
            "He showed a friend a photo of knives laid out on his bed and said these are for "
            "assembly.",
            True,
        ),
        (
            "Josh keeps a notebook with the names of students crossed out and the date of the "
            "prom circled.",
            False,
        ),
        (
            "Callum messaged a girl: stay home tomorrow, I mean it, something is happening at "
            "college.",
            True,
        ),
        (
            "Reece looks up how many people died in famous school attacks and says he could beat "
            "that number.",
            False,
        ),
        ("Learner posted that at 9 tomorrow the college is going to know his name.", True),
    ],
)
def test_warning_behaviours_without_ideology_words(text: str, danger: bool) -> None:
    result = assess(text, learned=False)
    assert any(s.indicator.critical for s in result.suggestions), text
    assert bool(result.danger) is danger, text


@pytest.mark.parametrize(
    "text",
    [
        "Chloe said tomorrow's chemistry exam is going to be a total disaster and she is "
        "dreading it.",
        "The rugby lads said they are going to destroy the visiting team on Friday.",
        "He boasted about his kill count in Call of Duty all through lunch.",
        "Priya told her drama group that by Saturday night the whole town will know her name "
        "after the talent show.",
        "In media studies they filmed a short thriller where a student counts down the days to "
        "revenge.",
        "Sam told his friends not to come in on Friday because the college is closed for staff "
        "training.",
        "He joked about blowing up the canteen over the food; his tutor checked with him and his "
        "family and it was clearly a joke.",
        "Ryan has a list of names for the five-a-side tournament on Thursday.",
        "Our countdown to the Christmas fair starts on Monday: ten days to go!",
        "He said he will be on the news next week because his band is playing at the town "
        "festival.",
        "Dan said he wants to be like his older brother who is in the Royal Marines.",
        "The football team are counting down the days to the cup final at the college ground.",
        "Toby said the whole college is going to know his name when his app launches on Friday.",
        "Kai has a hit list of songs for his DJ set at the prom.",
        "Abbie told her friends to stay away from the canteen on Friday because she has "
        "chickenpox.",
        "He calls himself a warrior on the rugby pitch and says Saturday's match is war.",
        "She bought a tactical vest for airsoft and plays at the woods site on Sunday.",
        "He keeps a notebook with the names of the girls he fancies and who he will ask to the "
        "prom first.",
        "The caretaker asked which doors are locked during the fire drill.",
        "The whole year will regret not revising for Friday's mock.",
        "He said he'd take the whole class with him to the football on Saturday.",
        "Jay said he has nothing to lose in the final against Leeds on Saturday.",
        "They're counting down the days until the summer holidays at college.",
        "He dressed as a zombie killer for the Halloween party at college.",
        "We told the learners to keep clear of the car park on Monday while the builders are in.",
        "Dev said the staff will never forget him after his leaving speech on Friday.",
        "He didn't come in on Friday and his mum says he is unwell.",
        "He won't be there on Monday, he has a dentist appointment.",
    ],
)
def test_hard_negatives_of_the_warning_behaviours(text: str) -> None:
    result = assess(text, learned=False)
    assert not any(s.indicator.critical for s in result.suggestions), text
    assert not result.danger, text


def test_a_threat_to_one_person_or_to_oneself_is_danger_not_critical() -> None:
    for text in (
        "Kofi said he will stab his stepdad tonight.",
        "She said she has nothing left to lose and wants to die.",
        "Ella said she wants to end her life and has written goodbye letters to her friends.",
    ):
        result = assess(text, learned=False)
        assert result.danger, text
        assert not any(s.indicator.critical for s in result.suggestions), text


def test_a_warning_behaviour_explains_itself_with_the_matched_words() -> None:
    [first] = [
        s
        for s in assess(
            "Owen has a list on his phone titled 'who goes first'.", learned=False
        ).suggestions
        if s.indicator.critical
    ]
    assert first.rule == "wb-list-of-names"
    assert first.matched == "list on his phone titled 'who goes first"
    assert "TRAP-18" in knowledge().sources["trap-18"]


def test_a_rules_only_class_is_not_a_feature_of_the_learned_layer(tmp_path: Path) -> None:
    from service.triage.learned import features

    path = write(tmp_path, '[classes.helper]\nsource = "s"\nmodel = false\nphrases = ["college"]\n')
    known = load_knowledge(path)
    assert known.rules_only == {"helper"} and "helper" in known.classes
    assert not any(k.startswith("c:helper") for k in features("He is at college.", known))
    assert "c:c" in features("He said x y.", known)  # an ordinary class still is
    bad = write(tmp_path, '[classes.helper]\nsource = "s"\nmodel = "no"\nphrases = ["x"]\n')
    with pytest.raises(KnowledgeError, match="class helper: model must be true or false"):
        load_knowledge(bad)


@pytest.mark.parametrize(
    ("text", "danger"),
    [
        ("Tyler messaged his cousin dont come in to college monday. I mean it.", True),
        ("Sophie said don't come in Wednesday, trust me, something's happening.", False),
        ("Kit told the girls who laughed at him they'll see it on the news tomorrow.", True),
        ("He said the bailiffs will leave in body bags if they come back.", False),
        (
            "Ollie ranks mass shooters by how many they killed and wants to be in the top ten.",
            False,
        ),
        (
            "Dan's sketchbook has a plan of the main building with crosses on two classrooms and "
            "Tuesday written underneath.",
            True,
        ),
        ("He asked the receptionist how long armed police would take to get here.", False),
        ("Leo told his tutor you're on my list now.", False),
        ("After watching the school shooting clips, Mo said this place deserves one too.", False),
        ("He keeps a calendar with the days crossed off and a gun drawn on the 9th.", True),
        (
            "Harry's art book has a picture of the college canteen in flames with little figures "
            "trapped inside.",
            False,
        ),
        ("Nia runs fan edits of the Columbine shooters on her TikTok.", False),
        (
            "He was overheard saying the device is ready and he only needs the time of the service "
            "at the gurdwara.",
            True,
        ),
    ],
)
def test_more_warning_behaviours(text: str, danger: bool) -> None:
    result = assess(text, learned=False)
    assert any(s.indicator.critical for s in result.suggestions), text
    if danger:
        assert result.danger, text


@pytest.mark.parametrize(
    "text",
    [
        "Bea asked me what populism means after hearing about it on the news.",
        "Construction learners drew a floor plan of the college with the fire exits marked for "
        "their fire safety unit on Friday.",
        "You're on the list for the Paris trip on Friday, Mrs Khan told Ali.",
        "He ranked the films by how many Oscars they won.",
        "The new learner asked how long the fire alarm test goes on for.",
        "He said he didn't come in Monday because his mum was in hospital.",
        "Josh said our football team deserves another trophy after the cup final.",
        "She's counting down the days to her 18th on the 9th.",
        "Mum told him to stay home tomorrow.",
        "We told the learners to stay off the field on Monday.",
        "The nurse told her to stay away from college until Thursday.",
        "His tutor warned him not to be late on Monday.",
        "He said everyone will know his name one day.",
        "She said the whole class will regret voting for him as rep.",
        "The lads were yelling kill them all at the PS5 during Warzone.",
        "He shouted that he would blow the place up, playing in the Valorant lobby.",
        "Her laptop is ready for collection at the IT desk on Monday.",
        "He drew the Great Fire of London for his history homework, with the buildings burning.",
        "She made a tribute video to the victims of the Manchester Arena bombing.",
        "The parcel is ready to collect from reception on Friday.",
    ],
)
def test_more_hard_negatives(text: str) -> None:
    result = assess(text, learned=False)
    assert not any(s.indicator.critical for s in result.suggestions), text
    assert not result.danger, text


def test_terrorism_called_justified_is_justifying_violence_as_violence_is() -> None:
    # Written here (not from any labelled file): the policy's "justifying the use of violence"
    # said of terrorism itself, with the same negation and debate handling as "violence".
    assert keys("Rowan told the class eco-terrorism is totally justified now.") >= {
        "critical.justifies-violence"
    }
    assert not critical("Rowan said terrorism is never justified.")
    assert not critical("We debated whether terrorism is ever justified.")


# Risk to life in progress, written here (not from any labelled file): an overdose taken, a
# learner at a height who says they can't go on, a threat to jump. The ordinary twins use the
# same words: medication taken as prescribed, a bridge on a trip, a chance to jump at.
@pytest.mark.parametrize(
    "text",
    [
        "Text from Rowan at 1am: has taken 30 paracetamol and is sorry for everything.",
        "Mum rang: Casey took a handful of tablets about an hour ago and is very drowsy.",
        "Kai messaged the group chat that he is standing on the bridge and can't do this anymore.",
        "Security found Ellis sitting on the roof of the car park saying there is no point.",
        "Ash has locked the door and says he will jump out of the window if anyone comes in.",
    ],
)
def test_risk_to_life_in_progress_is_immediate_danger(text: str) -> None:
    assert assess(text, learned=False).danger, text


@pytest.mark.parametrize(
    "text",
    [
        "Rowan has taken her tablets this morning as usual and is fine to attend.",
        "On the geography trip we stood on the bridge and took photos of the river.",
        "The roofers were standing on the roof all day; the site manager said sorry for the noise.",
        "Casey said she will jump at the chance of a level 3 apprenticeship.",
    ],
)
def test_the_same_words_in_ordinary_mail_are_not_danger(text: str) -> None:
    assert not assess(text, learned=False).danger, text
