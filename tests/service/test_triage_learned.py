"""The learned triage layer (service/triage/learned.py): its weights reproduce, it flags
unseen-style wording with the words that weighed most, it respects negation, its file
errors name the file, and the hook never fails on hostile text.

Texts are invented here and are not taken from bench/triage/ (the evaluation set).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.indicators import Assessment, assess
from service.triage import knowledge
from service.triage.learned import (
    LEARNED_CRITICAL,
    MAX_MODEL_CHARS,
    MODEL_FILE,
    LearnedDangerSign,
    LearnedSuggestion,
    ModelError,
    add_learned,
    features,
    load_model,
    model,
)

BENCH = Path(__file__).resolve().parents[2] / "bench"

# Written for this test, in the way staff write; in no labelled file.
UNSEEN_CRITICAL = (
    "Since the summer Corey calls the men who fight for the caliphate his brothers, says "
    "the unbelievers deserve what is coming and he is saving to get out there to join them."
)
ORDINARY = "Corey has been late twice this week because the bus from the village was cancelled."


def _trainer():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        import train_triage
    finally:
        sys.path.remove(str(BENCH))
    return train_triage


@pytest.mark.slow
def test_training_twice_writes_the_same_file() -> None:
    trainer = _trainer()
    # Four of the files: determinism is the code's, and the whole set takes minutes to train
    # twice (the shipped weights' own header is checked below, and the unseen set's refusal in
    # the next test).
    some = tuple(trainer.HERE / n for n in ("heldout2.toml", "tuning.toml", "tuning13.toml"))
    first = trainer.dump(trainer.train_model(some, date="2026-01-01"))
    second = trainer.dump(trainer.train_model(some, date="2026-01-01"))
    assert first == second
    data = json.loads(first)
    # The header says what it was trained on, with each file's hash.
    assert [e["file"] for e in data["trained_on"]] == [
        "bench/triage/heldout2.toml",
        "bench/triage/tuning.toml",
        "bench/triage/tuning13.toml",
    ]
    assert all(len(e["sha256"]) == 64 for e in data["trained_on"])
    assert data["models"]["critical"]["weights"]
    assert 0 < data["models"]["critical"]["threshold"] < 1


def test_the_shipped_weights_say_what_they_were_trained_on_and_load() -> None:
    learned = model()
    assert learned.header["trained"]
    files = [entry["file"] for entry in learned.header["trained_on"]]
    assert files and not any("heldout5" in f for f in files)
    assert learned.critical.weights and learned.danger.weights
    assert MODEL_FILE.name == "learned_model.json"


def test_the_trainer_and_the_benchs_lofo_never_read_the_fresh_unseen_set(tmp_path: Path) -> None:
    trainer = _trainer()
    unseen = tmp_path / "heldout5.toml"
    unseen.write_text('[[case]]\nid = "x"\ntext = "x"\ncritical = true\ndanger = false\n')
    with pytest.raises(SystemExit, match="never trained on"):
        trainer.load_cases([unseen])
    # --lofo scores trainer.load_cases() over TRAIN_FILES: the unseen set is never among them.
    assert all("heldout5" not in p.name for p in trainer.TRAIN_FILES)
    assert "heldout2.toml" in {p.name for p in trainer.TRAIN_FILES}
    sys.path.insert(0, str(BENCH))
    try:
        import bench_triage
    finally:
        sys.path.remove(str(BENCH))
    assert "heldout5" in bench_triage.UNSEEN  # run only by name, never in "all"


def test_content_words_a_few_apart_pair_up_but_not_across_a_negation() -> None:
    known = knowledge()
    said = features("He wants bombing of the local mosque.", known)
    bomb, mosque = known.stem("bombing"), known.stem("mosque")
    assert f"s:{bomb} {mosque}" in said  # three words apart
    assert f"s:{bomb} {known.stem('local')}" in said and f"s:{bomb} of" not in said  # plain
    denied = features("He would never want bombing of any mosque.", known)
    assert not any(f.startswith("s:") and bomb in f.split() for f in denied)


def test_unseen_wording_is_flagged_with_the_words_that_weighed_most() -> None:
    # The model on its own (as if no rule had matched), then the whole assessment.
    result = add_learned(UNSEEN_CRITICAL, Assessment([], []))
    [suggestion] = result.suggestions
    assert isinstance(suggestion, LearnedSuggestion)
    assert suggestion.indicator is LEARNED_CRITICAL and suggestion.indicator.critical
    assert suggestion.explanation.startswith("the wording (words that weighed most: '")
    assert suggestion.explanation.endswith(f"→ {LEARNED_CRITICAL.label}")
    quoted = [w for part in suggestion.matched.split(", ") for w in part.split()]
    assert quoted and all(word in UNSEEN_CRITICAL for word in quoted)
    assert any(s.indicator.critical for s in assess(UNSEEN_CRITICAL).suggestions)


def test_an_ordinary_worry_is_not_flagged_by_the_model() -> None:
    assert add_learned(ORDINARY, Assessment([], [])) == Assessment([], [])


def test_a_word_alone_is_not_amplified_into_a_flag() -> None:
    # Features weigh 1/sqrt(how many), but never more than in a typical narrative learned
    # from: the words the model weighs most, each alone, flag nothing ("COM" once did).
    weights = model().critical.weights
    strongest = sorted((w for w in weights if w.startswith("w:")), key=lambda w: -weights[w])
    for feature in strongest[:10]:
        assert not add_learned(feature[2:], Assessment([], [])).suggestions, feature
    assert add_learned("COM", Assessment([], [])) == Assessment([], [])


def test_a_negated_statement_reads_differently_from_the_statement() -> None:
    known = knowledge()
    said = features("He has accessed extremist websites.", known)
    denied = features("There is no evidence he has accessed extremist websites.", known)
    assert "w:extremist" in said and "w:extremist" not in denied
    assert "n:extremist" in denied
    assert not add_learned(
        "There is no evidence he has accessed extremist websites.", Assessment([], [])
    ).suggestions


def test_the_model_adds_only_what_the_rules_did_not_say() -> None:
    # A rule already named a critical factor: the model adds no second critical suggestion.
    rules = assess("He praised ISIS in class.", learned=False)
    assert rules.suggestions
    combined = add_learned("He praised ISIS in class.", rules)
    assert combined.suggestions == rules.suggestions


def test_a_danger_flag_explains_itself() -> None:
    text = "Jordan says he is bringing his brother's shotgun to the fair on Saturday night."
    result = add_learned(text, Assessment([], []))
    signs = [d for d in result.danger if isinstance(d, LearnedDangerSign)]
    assert signs, "the danger model should read this as immediate danger"
    assert signs[0].explanation.startswith("the wording (words that weighed most: '")
    assert signs[0].explanation.endswith("→ someone may be in immediate danger")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "learned_model.json"),
        ('{"about": "x"}', "expected a 'models' table"),
        (
            '{"models": {"critical": {"bias": 0, "threshold": 2, "weights": {}},'
            ' "danger": {"bias": 0, "threshold": 0.5, "weights": {}}}}',
            "out of range",
        ),
        ('{"models": {"critical": {"bias": 0}, "danger": {}}}', "models.critical"),
    ],
)
def test_a_broken_weights_file_names_the_file(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "learned_model.json"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ModelError, match=message) as caught:
        load_model(path)
    assert str(path) in str(caught.value)


HOSTILE = [
    "",
    " ",
    "\x00\x01\x02" * 1000,
    "caliphate " * 100_000,  # one word repeated: a single window of pieces
    "no " * 50_000 + "join the brothers",
    "\u202e\u200b\ufeff" * 5000,
    "💣🔪🔫" * 20_000,
    "a" * 1_000_000,  # one enormous word
    ".\n" * 200_000,
    "He said. " * 100_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_the_hook_never_fails_on_hostile_text(text: str) -> None:
    result = assess(text)
    assert isinstance(result, Assessment)
    for suggestion in result.suggestions:
        assert suggestion.explanation
    add_learned(text[:MAX_MODEL_CHARS], Assessment([], []))


@given(st.text(max_size=400))
def test_the_hook_never_fails_on_arbitrary_text(text: str) -> None:
    result = add_learned(text, Assessment([], []))
    for suggestion in result.suggestions:
        assert all(word in text for word in suggestion.matched.split())


def test_a_veto_above_the_threshold_is_refused_naming_the_file(tmp_path: Path) -> None:
    data = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    data["models"]["critical"]["veto"] = data["models"]["critical"]["threshold"] + 0.01
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match=r"weights\.json.*veto"):
        load_model(path)


def test_the_shipped_critical_model_has_a_veto_under_its_threshold() -> None:
    critical = model().critical
    assert 0.0 < critical.veto <= critical.threshold
    assert model().danger.veto == 0.0  # a danger sign from a rule always stands


def test_the_trainer_picks_the_veto_that_keeps_most_within_the_false_alarm_target() -> None:
    trainer = _trainer()
    # Ten critical narratives the rules find (model fairly sure), ten ordinary ones the rules
    # flag too, on which the model is sure they are ordinary, and ten quiet ordinary ones.
    probs = [0.8] * 10 + [0.05] * 10 + [0.1] * 10
    ys = [True] * 10 + [False] * 20
    rules = [True] * 10 + [True] * 10 + [False] * 10
    words = [30] * 30
    threshold, veto = trainer.choose_veto(probs, ys, 0.1, rules, words)
    assert 0.05 < veto <= threshold  # the rules' ten false alarms are set aside
    flags = [
        trainer.flagged(p, r, threshold, veto, n)
        for p, r, n in zip(probs, rules, words, strict=True)
    ]
    assert flags == [True] * 10 + [False] * 20
    # Texts too short to judge keep the rules' flag whatever the veto.
    assert trainer.flagged(0.01, True, threshold, veto, trainer.MIN_WORDS - 1)
    assert not trainer.flagged(0.01, True, threshold, veto, trainer.MIN_WORDS)


def test_the_layer_sets_aside_a_rule_flag_only_in_a_text_long_enough_to_judge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.triage import learned

    quiet = learned._Linear(bias=-20.0, threshold=0.5, weights={}, veto=0.5)
    monkeypatch.setattr(learned, "model", lambda: learned.LearnedModel(quiet, quiet, {}))
    short = "Corey said the bomber who hit the arena was a legend."
    long = short + " He said it again in the canteen at lunch in front of the other apprentices."
    assert any(s.indicator.critical for s in assess(short).suggestions)
    result = assess(long)
    assert not any(s.indicator.critical for s in result.suggestions)
    assert [s.indicator.critical for s in result.set_aside] == [True]
    assert assess(long, learned=False).suggestions  # the rules alone still flag it
