"""A learned layer beside the rules: what the wording *as a whole* suggests.

The rules (engine.py, knowledge.toml) say exactly which words matched, but only for wording
someone wrote a rule for. This layer is two small logistic-regression models, one for "a more
critical risk factor" and one for "someone may be in immediate danger", over features of the
words: their stems (the engine's own normaliser, respelling and typo tolerance, so "bombing",
"bombed" and "bomm" are one), pairs of neighbouring stems ("join them", "was hero"), pairs
of content words two to four apart ("bombing … mosque"), the knowledge file's classes a
phrase belongs to (a proscribed group, a weapon, a glorifying word: a name added to the file
counts at once) and pairs of those classes in one sentence ("a legend" with "the bomber").
Words a negation covers count as negated words. Each present
feature weighs 1/sqrt(how many are present), so a sentence naming many things does not score
high for that alone. Four-letter pieces of words were tried for misspellings and dropped:
on unseen files they raised false alarms more than recall (tried again, hashed into 4,096
buckets, with the same result). Trained offline by
``bench/train_triage.py`` on the labelled narratives; the weights are data
(``learned_model.json``, with a header saying what they were trained on and when).

At run time it is a dot product: pure Python, no network, no download, no numpy. A text is
read in windows of a few sentences (the training narratives are that long, so a long e-mail
is not judged by its length), and only its first ``MAX_MODEL_CHARS`` characters.

Every flag says why: the words that weighed most in the window that scored highest. Those
quote the concern, so they appear only where the rules' matched words do (the register and
``alert_detail = "full"``); a summary alert names the indicator only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from service.indicators import Assessment, DangerSign, Indicator, Suggestion
from service.triage import knowledge
from service.triage.engine import _SENTENCES, _WORDS, Knowledge

__all__ = [
    "LEARNED_CRITICAL",
    "MAX_MODEL_CHARS",
    "MODEL_FILE",
    "Features",
    "LearnedDangerSign",
    "LearnedModel",
    "LearnedSuggestion",
    "ModelError",
    "Verdict",
    "add_learned",
    "features",
    "load_model",
    "model",
    "windows",
]

MODEL_FILE = Path(str(resources.files("service.triage").joinpath("learned_model.json")))
MAX_MODEL_CHARS = 10_000  # a concern is a few paragraphs (the rules read 200,000): ~10 ms at most
WINDOW_SENTENCES = 3  # the training narratives are one to three sentences
MAX_WINDOW_WORDS = 80  # a "sentence" without full stops is cut into pieces this long
MAX_WINDOWS = 400  # of a text (10,000 characters are about 150 sentences)
TOP_WORDS = 3  # words quoted in an explanation
SKIP_WINDOW = 5  # content-word pairs 2-4 words apart (leave-one-file-out: +0.8 points recall)
MAX_CLASSES = 12  # per sentence, so pairs of them stay few in hostile text (66 at most)
# Never quoted alone as a reason: they weigh little and explain nothing.
_PLAIN_WORDS = (
    "a an the and or but of to in on at for with from by about as is was were are be been "
    "it its this that he she they him her them his their i me my we you has have had do "
    "did said says told say just also very then there here when what who would could "
    "should will can not all going go get got out up one some any if so no"
)
_PLAIN = frozenset(_PLAIN_WORDS.split())
# Classes of the knowledge file too common to mean anything alone ("the", "was", "him").
GENERIC_CLASSES = frozenset({"det", "poss", "be", "him"})


class ModelError(ValueError):
    """The weights file is missing or malformed; the message names the file."""


# A feature → the words as written that gave it (the first place it occurs).
Features = dict[str, str]


def _class_index(known: Knowledge) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """First stem → (phrase, class name), longest phrase first."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for name, phrases in known.classes.items():
        if name in GENERIC_CLASSES or name in known.rules_only:
            continue
        for phrase in phrases:
            index.setdefault(phrase[0], []).append((phrase, name))
    for entries in index.values():
        entries.sort(key=lambda e: (-len(e[0]), e[1]))
    return index


_CLASS_INDEXES: dict[int, tuple[Knowledge, dict[str, list[tuple[tuple[str, ...], str]]]]] = {}


def _classes_of(known: Knowledge) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """The class index of a knowledge file, built once (Knowledge is not hashable)."""
    cached = _CLASS_INDEXES.get(id(known))
    if cached is None or cached[0] is not known:
        if len(_CLASS_INDEXES) > 8:
            _CLASS_INDEXES.clear()
        cached = (known, _class_index(known))
        _CLASS_INDEXES[id(known)] = cached
    return cached[1]


def _negated(stems: list[str], known: Knowledge) -> list[bool]:
    """Which words a negation covers, as the rules read it: up to three words after "not" or
    "never", and the rest of the clause after "no evidence", "no concerns" and the like (to
    "but", "however" ...). A bag of words cannot tell "accessed extremist websites" from
    "no evidence he accessed extremist websites"; this lets the model."""
    covered = [False] * len(stems)
    negators, breaks = known.negators, known.clause_breaks
    first_words = {p[0] for p in known.negations}
    for j, s in enumerate(stems):
        if s in negators:
            for k in range(j + 1, min(j + 4, len(stems))):
                if stems[k] in breaks:
                    break
                covered[k] = True
        if s in first_words and any(
            tuple(stems[j : j + len(p)]) == p for p in known.negations if p[0] == s
        ):
            for k in range(j, len(stems)):
                if stems[k] in breaks:
                    break
                covered[k] = True
    return covered


def _sentence_features(raw: list[str], known: Knowledge, out: Features) -> None:
    """Add the features of one sentence's words (as written) to ``out``."""
    stems = [known.stem(w) for w in raw]
    negated = _negated(stems, known)
    classes = _classes_of(known)
    found: dict[str, str] = {}
    for i, s in enumerate(stems):
        if negated[i]:
            # A negated word counts as itself, negated; it forms no pair and no class.
            out.setdefault("n:" + s, raw[i])
            continue
        out.setdefault("w:" + s, raw[i])
        if i and not negated[i - 1]:
            out.setdefault(f"b:{stems[i - 1]} {s}", f"{raw[i - 1]} {raw[i]}")
        for phrase, name in classes.get(s, ()):
            n = len(phrase)
            key = "c:" + name
            if key in found or len(found) >= MAX_CLASSES:
                continue
            if n == 1 or tuple(stems[i : i + n]) == phrase:
                found[key] = " ".join(raw[i : i + n])
    # Pairs of content words a few apart ("bombing … mosque", "join … brothers"): the same
    # thing said with other words between. Plain words ("the", "was") are left out of them.
    for i, s in enumerate(stems):
        if negated[i] or s in _PLAIN:
            continue
        for j in range(i + 2, min(i + SKIP_WINDOW, len(stems))):
            if not negated[j] and stems[j] not in _PLAIN:
                out.setdefault(f"s:{s} {stems[j]}", f"{raw[i]} … {raw[j]}")
    for key, shown in found.items():
        out.setdefault(key, shown)
    # Two kinds of thing in one sentence ("a hero" and "the bomber"; "a knife" and "tomorrow"):
    # what the rules' phrases capture, without needing their exact words.
    names = sorted(found)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            shown = f"{found[names[a]]} … {found[names[b]]}"
            out.setdefault(f"p:{names[a][2:]}+{names[b][2:]}", shown)


def sentences(text: str) -> list[list[str]]:
    """The text's sentences as words (as written); a long one in pieces."""
    out: list[list[str]] = []
    for match in _SENTENCES.finditer(text):
        raw = _WORDS.findall(match.group())
        for first in range(0, len(raw), MAX_WINDOW_WORDS):
            out.append(raw[first : first + MAX_WINDOW_WORDS])
    return out


def features(text: str, known: Knowledge) -> Features:
    """The features of a whole (short) text: what training sees for one narrative."""
    out: Features = {}
    for raw in sentences(text):
        _sentence_features(raw, known, out)
    return out


def windows(text: str, known: Knowledge) -> Iterable[Features]:
    """The features of each window of up to ``WINDOW_SENTENCES`` consecutive sentences."""
    return windows_of(sentences(text[:MAX_MODEL_CHARS]), known)


def word_count(split: list[list[str]]) -> int:
    """The words of a text split by ``sentences``."""
    return sum(len(words) for words in split)


def sets_aside(probability: float, words: int, veto: float) -> bool:
    """Whether the model overrules a rule's critical flag: the wording reads as clearly
    ordinary (under ``veto``) in a text long enough to judge. One of fewer than ``MIN_WORDS``
    words ("Morgan hopes they all get killed, the families in the camp.") has too little
    context, so a rule's flag on it stands whatever the probability. The trainer chooses the
    veto with this same test (bench/train_triage.flagged)."""
    return probability < veto and words >= MIN_WORDS


def windows_of(split: list[list[str]], known: Knowledge) -> Iterable[Features]:
    """``windows`` of a text already split into sentences."""
    per_sentence: list[Features] = []
    for raw in split[: MAX_WINDOWS + WINDOW_SENTENCES]:
        one: Features = {}
        _sentence_features(raw, known, one)
        per_sentence.append(one)
    if len(per_sentence) <= WINDOW_SENTENCES:
        merged: Features = {}
        for one in per_sentence:
            for k, v in one.items():
                merged.setdefault(k, v)
        yield merged
        return
    for start in range(len(per_sentence) - WINDOW_SENTENCES + 1):
        merged = {}
        for one in per_sentence[start : start + WINDOW_SENTENCES]:
            for k, v in one.items():
                merged.setdefault(k, v)
        yield merged


@dataclass(frozen=True)
class Verdict:
    """One model's reading of a text: its probability, whether it is over the threshold,
    and the words (as written) that weighed most towards it."""

    probability: float
    flagged: bool
    words: tuple[str, ...]

    @property
    def why(self) -> str:
        """ "the wording (words that weighed most: 'caliphate', 'join them')" — quotes the
        concern: only where the rules' matched words may be shown."""
        if not self.words:
            return "the wording as a whole"
        quoted = ", ".join(f"'{w}'" for w in self.words)
        return f"the wording (words that weighed most: {quoted})"


@dataclass(frozen=True)
class _Linear:
    bias: float
    threshold: float
    weights: dict[str, float]
    # Critical only: below this probability the wording as a whole reads as clearly ordinary,
    # and a rule's critical suggestion is set aside rather than made urgent (0: never).
    veto: float = 0.0

    def score(self, feats: Features) -> float:
        w = self.weights
        return self.bias + scale(len(feats)) * sum(w.get(f, 0.0) for f in feats)

    def verdict(self, text: str, known: Knowledge) -> Verdict:
        return self.best(list(windows(text, known)))

    def best(self, windows: list[Features]) -> Verdict:
        """The verdict of the window that scores highest."""
        best: tuple[float, Features] | None = None
        for window in windows:
            z = self.score(window)
            if best is None or z > best[0]:
                best = (z, window)
        if best is None:
            return Verdict(0.0, False, ())
        z, window = best
        probability = _sigmoid(z)
        return Verdict(probability, probability >= self.threshold, self._top(window))

    def _top(self, window: Features) -> tuple[str, ...]:
        """The words (as written) that pushed hardest towards a flag: each feature's weight
        goes to its words (a pair of classes to both), with "the", "was" and the like trimmed
        off the ends; the heaviest few, none inside another."""
        w = self.weights
        weight_of: dict[str, float] = {}
        shown_as: dict[str, str] = {}
        for feature, words in window.items():
            value = w.get(feature, 0.0)
            if value <= 0:
                continue
            for part in words.split(" … "):
                shown = _trim(part)
                if shown:
                    low = shown.lower()
                    weight_of[low] = weight_of.get(low, 0.0) + value
                    shown_as.setdefault(low, shown)
        chosen: list[str] = []
        for low in sorted(weight_of, key=lambda k: (-weight_of[k], k)):
            if any(low in c or c in low for c in chosen):
                continue
            chosen.append(low)
            if len(chosen) == TOP_WORDS:
                break
        return tuple(shown_as[low] for low in chosen)


def _trim(words: str) -> str:
    """The words without plain ones at either end ("has accessed" → "accessed"), at most
    40 characters; empty when nothing is left."""
    parts = words.split()
    while parts and parts[0].lower() in _PLAIN:
        parts.pop(0)
    while parts and parts[-1].lower() in _PLAIN:
        parts.pop()
    return " ".join(parts)[:40]


MIN_FEATURES = 57  # a typical training narrative has 57: a shorter text is not amplified
# A rule's flag on a text shorter than this stands (the narratives' median is 30 words; a
# quarter have fewer than 20): leave-one-file-out, 97.4% with it against 97.3% without.
MIN_WORDS = 20


def scale(count: int) -> float:
    """The value of each present feature: 1/sqrt(how many are present), so that a text's
    score does not grow with how many features it has (a sentence naming many kinds of
    thing makes many pairs of them) and a long window is not judged by its length. Never
    more than for ``MIN_FEATURES``, a typical narrative: a text of one word ("COM") or one
    short line ("He was seen with the same group again.") would otherwise weigh its few
    words several times as much as the narratives the model learned from."""
    return 1.0 / math.sqrt(max(count, MIN_FEATURES))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class LearnedModel:
    """The two models and the header of the file they came from."""

    critical: _Linear
    danger: _Linear
    header: dict[str, Any]


def _linear(data: Any, name: str, path: Path) -> _Linear:
    if not isinstance(data, dict):
        raise ModelError(f"{path}: models.{name} must be a table")
    try:
        bias = float(data["bias"])
        threshold = float(data["threshold"])
        veto = float(data.get("veto", 0.0))
        weights = {str(k): float(v) for k, v in dict(data["weights"]).items()}
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{path}: models.{name}: {err!r}") from err
    if not 0.0 < threshold < 1.0 or not all(math.isfinite(v) for v in weights.values()):
        raise ModelError(f"{path}: models.{name}: threshold or weights out of range")
    if not 0.0 <= veto <= threshold:
        raise ModelError(f"{path}: models.{name}: veto must be between 0 and the threshold")
    return _Linear(bias, threshold, weights, veto)


def load_model(path: Path) -> LearnedModel:
    """Read a weights file written by bench/train_triage.py; a mistake names the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ModelError(f"{path}: expected a 'models' table (retrain: bench/train_triage.py)")
    models = data["models"]
    return LearnedModel(
        _linear(models.get("critical"), "critical", path),
        _linear(models.get("danger"), "danger", path),
        {k: v for k, v in data.items() if k != "models"},
    )


@cache
def model() -> LearnedModel:
    """The shipped weights, read once per process."""
    return load_model(MODEL_FILE)


# ---------------------------------------------------------------------------- the hook

# Not one of the policy's items (never a Form option): the model says "one of the more
# critical risk factors", not which; the DSP decides. Its group counts in reports as such.
LEARNED_CRITICAL = Indicator(
    group="More critical risk factors",
    label="A more critical risk factor, from the wording as a whole",
    critical=True,
    key="critical.from-wording",
)
SOURCE = "Learned from the labelled narratives in bench/triage/ (bench/train_triage.py)"


@dataclass(frozen=True)
class LearnedSuggestion(Suggestion):
    """A suggestion of the model: ``matched`` holds the words that weighed most."""

    why: str = ""

    @property
    def explanation(self) -> str:
        """ "the wording (words that weighed most: 'caliphate', …) → A more critical risk
        factor, …" — quotes the concern: register and alert_detail = "full" only."""
        return f"{self.why} → {self.indicator.label}"


@dataclass(frozen=True)
class LearnedDangerSign(DangerSign):
    """Immediate danger suggested by the model: ``matched`` holds the words that weighed most."""

    why: str = ""

    @property
    def explanation(self) -> str:
        return f"{self.why} → someone may be in immediate danger"


def add_learned(text: str, assessment: Assessment) -> Assessment:
    """The rules' assessment, weighed by the model reading the wording as a whole.

    - A more critical risk factor when no rule named one and the model is over its threshold.
    - A rule's critical suggestion stands unless the model finds the wording clearly ordinary
      (``sets_aside``): then it is still shown to the DSP, but not urgent. Rules that name
      things fire on lessons, the news and the learner as a target in wording nobody wrote an
      exception for; on such wording the model, trained on hard negatives, is the better
      judge (leave-one-file-out figures in docs/triage.md).
    - Immediate danger when no rule saw it and the model is over its threshold.
    The alert is urgent when any critical factor or danger remains."""
    if not text:
        return assessment
    learned = model()
    split = sentences(text[:MAX_MODEL_CHARS])
    found = list(windows_of(split, knowledge()))
    suggestions, danger = list(assessment.suggestions), list(assessment.danger)
    set_aside = list(assessment.set_aside)
    by_rules = [s for s in suggestions if s.indicator.critical]
    verdict = learned.critical.best(found)
    if by_rules and sets_aside(verdict.probability, word_count(split), learned.critical.veto):
        suggestions = [s for s in suggestions if not s.indicator.critical]
        set_aside += by_rules
    elif not by_rules and verdict.flagged:
        suggestions.append(
            LearnedSuggestion(
                LEARNED_CRITICAL,
                ", ".join(verdict.words),
                "learned.critical",
                SOURCE,
                why=verdict.why,
            )
        )
    if not danger:
        said = learned.danger.best(found)
        if said.flagged:
            danger.append(
                LearnedDangerSign(", ".join(said.words), "learned.danger", SOURCE, why=said.why)
            )
    return Assessment(suggestions, danger, set_aside)
