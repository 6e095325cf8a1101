"""A small phrase matcher over normalised words, driven by the knowledge file.

Why not regular expressions: a few hundred alternations tried at every position of a long
e-mail cost hundreds of milliseconds in Python's ``re``; here the text is split into words
once, each word is reduced to a stem (so "bombing", "bombed" and "bombs" are one word, and
"radicalized" is "radicalised"), and only the rules whose first word occurs are tried.

Pattern language (one string per pattern, words separated by spaces, all within a sentence):

- ``word``           the word in any inflection (``praise`` matches praised, praising, praises)
- ``a|b|{class}``    any of these; ``{class}`` is any phrase listed under ``[classes]``
- ``[a|b]``          optional
- ``..`` / ``...``   up to 3 / up to 8 other words (never a negation such as "not" or "never")

A rule may also name words that must stand *near* its pattern (``near``: each list one of
whose phrases must occur within ``window`` words either side, not negated): "the Arena lad" …
"did what had to be done", in either order, is one finding spanning both.

Before matching, a word is respelt from the knowledge file's ``[spelling]`` list ("sed" →
"said", "vids" → "videos") and a long word one letter away from a ``fuzzy`` word (a dropped,
added, changed or swapped letter: "beheding", "swastica") is read as that word.

A match is dropped when a negation stands just before it ("would never support …", "doesn't
think violence is justified") or when its clause opens with "no evidence", "no concerns",
"nothing to suggest" and the like. A rule marked ``mention = true`` only names something
(an organisation, a symbol, a video); it is also dropped in a sentence about a lesson, a
debate, an essay, the news or training, or the sentence after one; right after "no", "anti"
or "counter" ("no extremist material", "anti-fascist stickers"); and in a sentence reporting
someone else's label that the reporter denies ("a customer complained it was 'IRA music'. Not a
concern."), or the sentence before one. Over-alerting is the safe side: nothing else cancels
a match, and nothing cancels a stance but a negation.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

__all__ = ["Finding", "Knowledge", "KnowledgeError", "Rule", "load_knowledge", "normalise", "stem"]

# Words, numbers and a few symbols (swastika, runes). Apostrophes stay inside ("didn't").
# Emoji and pictographs are words of one character each ("⚡⚡", a flag's two letters); letters
# followed by digits are two words ("WhitePower1488" is "WhitePower" and "1488"), digits
# followed by letters one ("2nite", "4chan").
_WORDS = re.compile(
    r"\d+[^\W\d_]*|[^\W\d_]+(?:['\u2019][^\W_]+)*"
    r"|[\u5350\u534d\u16a0-\u16ff\u2600-\u27bf\U0001f1e6-\U0001f1ff\U0001f300-\U0001faff]"
)
# A sentence (or clause after ";" or ":"): where phrases, gaps and negations stop. A single
# line break is not an end (mail wraps lines); a blank line is.
# (Runs of ordinary characters in one step: a character at a time cost ~10 ms per 200,000.)
_SENTENCES = re.compile(r"(?:[^.!?;:\n]+|\n(?![ \t]*\n))+")
_SENTENCE_REST = re.compile(r"[^.!?\n]{0,300}")  # the rest of a sentence, after a clause
_PARAGRAPH_END = re.compile(r"[.!?;:]*[ \t]*\n[ \t]*\n")
_SPAN = re.Match.span
_GAP = {"..": 3, "...": 8}
MAX_SENTENCE_WORDS = 120  # a longer "sentence" (no full stops) is read in pieces this long
ACROSS_WORDS = 40  # a sentence this short or shorter is also read with the one after it
# Endings not stripped from these (they would collide with another word).
_KEEP = frozenset({"news", "isis", "isil", "this", "bus", "gas", "ss", "has", "was", "is", "as"})
_VOWELS = set("aeiouy")
_AMERICAN_Z = re.compile(r"([iy])z(?=(?:e|ed|es|ing|ation|ations|er|ers)$)")


class KnowledgeError(ValueError):
    """The knowledge file is malformed; the message names the file, rule and pattern."""


def stem(word: str) -> str:
    """A light, consistent stemmer: one form for a word's inflections and British/American
    spellings. It need not give real words, only the same one for pattern and text."""
    w = word.lower().replace("\u2019", "'")
    if w.endswith("n't") or w == "cannot":
        return "not"
    if w.endswith("'ll"):
        return "will"  # he'll, they'll
    if "'" in w:
        w = w.split("'", 1)[0]  # he's, they're, John's
    if w in _KEEP or not w.isalpha():
        return w
    w = _AMERICAN_Z.sub(r"\1s", w)  # radicalize, radicalizing, organization
    if w.endswith("iour"):
        w = w[:-4] + "ior"
    # Plural or third person first, then the verb ending, so that every inflection of a
    # word lands on one stem ("nasheeds" and "nasheed", "bombings" and "bombing").
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes", "zes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 4 and w.endswith("ied"):
        w = w[:-3] + "y"
    elif len(w) > 5 and w.endswith("ing"):
        w = _undouble(w[:-3])
    elif len(w) > 4 and w.endswith("eed"):
        w = w[:-1]  # agreed as agree, nasheed as nashee: never "nash"
    elif len(w) > 4 and w.endswith("ed"):
        w = _undouble(w[:-2])
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def _undouble(w: str) -> str:
    if len(w) > 2 and w[-1] == w[-2] and w[-1] not in _VOWELS and w[-1] not in "lsz":
        return w[:-1]
    return w


FUZZY_MIN = 6  # shorter words are not read as a near miss: too many real words are close
# Nor longer ones: no fuzzy word is this long, and one hostile 200,000-letter "word" would
# make 200,000 deletions of itself (tens of gigabytes).
FUZZY_MAX = 40
# The stem cache (a word as written → its stem) is emptied past this many words: far more
# than the distinct words of 200,000 characters of ordinary prose (a few thousand), so a scan
# rarely restarts it, yet a hostile text of unique words, or months of mail in a long-running
# service, holds it to a few MB (200,000 words was ~30 MB). Emptying changes no result.
MAX_STEMS = 50_000


def _deletions(word: str) -> list[str]:
    return [word[:n] + word[n + 1 :] for n in range(len(word))]


def normalise(text: str) -> list[str]:
    """The stems of a phrase, as patterns and class entries are read."""
    return [stem(w) for w in _WORDS.findall(text)]


@dataclass(frozen=True)
class _Element:
    options: tuple[tuple[str, ...], ...] = ()
    optional: bool = False
    gap: int = 0
    # first word → the options starting with it, longest first (a class may hold hundreds)
    by_first: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    id: str
    indicators: tuple[str, ...]  # indicator keys, or "danger"
    source: str  # a key of [sources]
    mention: bool
    patterns: tuple[str, ...]
    needs: tuple[tuple[str, ...], ...] = ()  # one of these phrases must be in the sentence
    unless: tuple[tuple[str, ...], ...] = ()  # none of these may be in the sentence
    note: str = ""
    # each group: one of its phrases within `window` words of the match, not negated
    near: tuple[tuple[tuple[str, ...], ...], ...] = ()
    window: int = 0
    across: bool = False  # also tried over a sentence read with the one before it
    fallback: bool = False  # only counts when no other rule suggests an indicator of its group


@dataclass(frozen=True)
class Finding:
    rule: Rule
    matched: str  # the words as written, spacing collapsed
    start: int = 0  # where in the text (characters)
    end: int = 0


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    elements: tuple[_Element, ...]
    first: tuple[tuple[str, ...], ...]
    # rule.near, each group indexed by first word (longest phrase first)
    near: tuple[dict[str, tuple[tuple[str, ...], ...]], ...] = ()
    # for each later element of the pattern and each near group, the first words it can
    # start with: a sentence lacking all of one set is not tried (spares most gap searches)
    also: tuple[frozenset[str], ...] = ()
    needs_first: frozenset[str] = frozenset()  # first words of rule.needs / rule.unless
    unless_first: frozenset[str] = frozenset()
    firsts: frozenset[str] = frozenset()  # the words it can start with
    # first word → what must follow it for a match: (words, reach), one of the words must
    # be among the `reach - 1` after the first (a first word not here: no such condition)
    follow: dict[str, tuple[tuple[frozenset[str], int], ...]] = field(default_factory=dict)
    # rule.needs / rule.unless by first word: a sentence checks only the phrases whose first
    # word it has (a guard list of a hundred phrases costs a set intersection, not a loop)
    needs_by_first: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    unless_by_first: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)


class _Piece:
    """A sentence of the text (or two read together); where its words are is worked out
    once, when first needed."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text = text
        self.end = end
        self._words = _WORDS.finditer(text, start, end)
        self._spans: list[tuple[int, int]] = []

    def span(self, first_word: int, last_word: int) -> tuple[int, int]:
        # only as far as needed: a hostile text of one 200,000-character "sentence" must not
        # be walked to its end for a match near its start
        spans = self._spans
        if len(spans) <= last_word:  # the spans up to last_word, walked in C
            spans.extend(map(_SPAN, islice(self._words, last_word + 1 - len(spans))))
        return spans[first_word][0], spans[last_word][1]


@dataclass
class _Labels:
    """Sentences of a text that report someone else's label ("a customer complained it was
    'IRA music'", "another coach asked if it's a neo-Nazi code"), and whether the reporter
    denies one ("not a concern", "it's historical accuracy"). A denial leaves out a mere
    mention in such a sentence or the one before; never a stance."""

    # (start, end) of each such sentence with the one before, in text order: both ends
    # only grow, so the first span ending after a point is the only one that may hold it
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    denied: bool = False
    final: bool = False  # the second reading: leave such findings out

    def add(self, start: int, end: int) -> None:
        self.starts.append(start)
        self.ends.append(end)

    def mutes(self, rule: Rule, start: int) -> bool:
        return rule.mention and self.touches(start, start + 1)

    def touches(self, start: int, end: int) -> bool:
        n = bisect_right(self.ends, start)
        return n < len(self.ends) and self.starts[n] < end


@dataclass
class Knowledge:
    """The knowledge file, compiled: rules indexed by the first word they need."""

    sources: dict[str, str]
    classes: dict[str, tuple[tuple[str, ...], ...]]
    rules: tuple[Rule, ...]
    cues: tuple[tuple[str, ...], ...]
    negators: frozenset[str]
    negations: tuple[tuple[str, ...], ...]
    clause_breaks: frozenset[str]
    index: dict[str, list[_Compiled]] = field(default_factory=dict)
    # "no extremist material", "anti-fascist stickers": a mention right after one of these
    # is not there
    not_before: frozenset[str] = frozenset()
    # Someone else's label the reporter rejects ("a customer complained it was 'IRA music'
    # ... not a concern"): see _Labels
    label_cues: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    denials: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # "he says it's not a concern": the learner's own denial
    denied_by_learner: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # the first words of the three lists above: most sentences have none (one set test)
    label_first: frozenset[str] = frozenset()
    across_index: dict[str, list[_Compiled]] = field(default_factory=dict)
    across_ids: frozenset[str] = frozenset()  # the rules read across two sentences
    # classes marked `model = false`: helpers of the rules (ordinary words such as "college"
    # or "exam"), not evidence; the learned layer does not count them
    rules_only: frozenset[str] = frozenset()
    cue_first: frozenset[str] = frozenset()
    negation_first: frozenset[str] = frozenset()  # first words of the clause negations
    spelling: dict[str, str] = field(default_factory=dict)  # variant → word, lower case
    fuzzy: dict[str, str] = field(default_factory=dict)  # a word and its one-letter deletions
    vocabulary: frozenset[str] = frozenset()  # every stem the file uses: never read as a typo
    # Which patterns a sentence can match at all, in a few integer operations (see _fields)
    word_bits: dict[str, int] = field(default_factory=dict)
    lows: int = 0
    guards: int = 0
    across_guards: int = 0
    by_guard: dict[int, _Compiled] = field(default_factory=dict)  # guard bit's length → it
    _stems: dict[str, str] = field(default_factory=dict)

    def stem(self, word: str) -> str:
        """The stem of a word of the text, after respelling (cached)."""
        known = self._stems.get(word)
        if known is not None:
            return known
        if len(self._stems) > MAX_STEMS:
            self._stems.clear()
        lower = word.lower().replace("\u2019", "'")
        respelt = self.spelling.get(lower)
        if respelt is not None:
            result = stem(respelt)
        else:
            result = stem(word)
            # "extremism" is a word of the file in its own right, not a typo of "extremist"
            long_enough = FUZZY_MIN <= len(lower) <= FUZZY_MAX
            if long_enough and self.fuzzy and result not in self.vocabulary:
                near_miss = self._near_miss(lower) if lower.isalpha() else None
                if near_miss is not None:
                    result = stem(near_miss)
        self._stems[word] = result
        return result

    def _near_miss(self, word: str) -> str | None:
        """The fuzzy word one edit from ``word`` (same first letter), if any: the symmetric
        deletion test covers a dropped, an added, a changed and two swapped letters."""
        fuzzy = self.fuzzy
        for key in (word, *_deletions(word)):
            target = fuzzy.get(key)
            if target is not None and target[0] == word[0] and abs(len(target) - len(word)) < 2:
                return target
        return None

    def find(self, text: str) -> list[Finding]:
        """The first match of each rule, in text order.

        Every step is bounded: a sentence longer than ``MAX_SENTENCE_WORDS`` is read in
        pieces of that many words, and a rule that has matched is not tried again, so a
        hostile text (one phrase repeated for megabytes) costs no more than an ordinary one.

        Someone else's label that the reporter rejects ("a parent complained it was
        'terrorist music' ... no concerns about the learners") is not the learner's: when the
        reporter denies and a mention stands in a sentence that reports such a label (or in
        the sentence before one), the text is read once more with those findings left out,
        so that a later match of the same rule still counts. A stance is never left out.
        """
        labels = _Labels()
        found = self._find(text, labels)
        if not labels.denied:
            return found
        muted = {f.rule.id for f in found if labels.mutes(f.rule, f.start)}
        if not muted:
            return found
        # read again for those rules only (the others' findings stand), leaving out their
        # matches in such sentences
        labels.final = True
        others = {r.id for r in self.rules} - muted
        kept = [f for f in found if f.rule.id not in muted]
        return sorted(kept + self._find(text, labels, others), key=lambda f: f.start)

    def _find(self, text: str, labels: _Labels, skip: set[str] | None = None) -> list[Finding]:
        found: list[Finding] = []
        done: set[str] = set(skip or ())
        # A piece of words read before, in the same context, can find nothing new (its rules
        # have matched or were ruled out the same way): repeated text is read once.
        seen: dict[tuple[tuple[str, ...], bool, bool], bool] = {}
        cue_before = False
        index = self.index
        across = self.across_index
        # the sentence before, for rules read across two ("He showed me the Christchurch
        # video. He said it was epic."): where it starts, its words, the cue before it
        before: tuple[int, list[str], bool] | None = None
        pairs_seen: set[tuple[tuple[str, ...], bool, bool]] = set()
        # The first words of the across rules not yet matched: a pair of sentences is read
        # together only when it has one (a matched rule's words no longer call for a read).
        across_done = 0
        for sentence in _SENTENCES.finditer(text):
            raw = _WORDS.findall(sentence.group())
            if not raw:
                continue
            stems = self._stems
            words = [stems.get(w) or self.stem(w) for w in raw]
            cue_at_start = cue_before
            if not labels.final:
                self._read_labels(labels, words, sentence.start(), sentence.end(), before)
            in_label = labels.final and labels.touches(sentence.start(), sentence.end())
            if index.keys().isdisjoint(words):
                cue_before = self._has_cue(words)
            else:
                piece = _Piece(text, sentence.start(), sentence.end())
                for first in range(0, len(words), MAX_SENTENCE_WORDS):
                    part = words[first : first + MAX_SENTENCE_WORDS]
                    key = (tuple(part), cue_before, in_label)
                    known = seen.get(key)
                    if known is None:
                        cue = self._sentence(
                            piece, first, part, found, done, cue_before, labels=labels
                        )
                        known = cue if cue is not None else self._has_cue(part)
                        if len(seen) < 10_000:
                            seen[key] = known
                    cue_before = known
            if before is not None and not self.across_ids <= done:
                matched = len(self.across_ids & done)
                if matched != across_done:  # rare: only when an across rule first matches
                    across_done = matched
                    across = {
                        w: live
                        for w, cs in self.across_index.items()
                        if (live := [c for c in cs if c.rule.id not in done])
                    }
                start, words_before, cue_earlier = before
                joint = words_before + words
                in_label = labels.final and labels.touches(start, sentence.end())
                pair = (tuple(joint), cue_earlier, in_label)
                if pair not in pairs_seen and not across.keys().isdisjoint(joint):
                    if len(pairs_seen) < 10_000:
                        pairs_seen.add(pair)
                    piece = _Piece(text, start, sentence.end())
                    self._sentence(piece, 0, joint, found, done, cue_earlier, True, labels)
            # a blank line ends a paragraph: the next sentence is not read with this one
            if len(words) <= ACROSS_WORDS and not _PARAGRAPH_END.match(text, sentence.end()):
                before = (sentence.start(), words, cue_at_start)
            else:
                before = None
        return found

    def _read_labels(
        self,
        labels: _Labels,
        words: list[str],
        start: int,
        end: int,
        before: tuple[int, list[str], bool] | None,
    ) -> None:
        """Note a sentence reporting someone else's label, and the reporter's denial (not
        the learner's own: "he says it's a misunderstanding"), for find()."""
        firsts = self.label_first.intersection(words)
        if not firsts:
            return
        present = set(words)
        if not labels.denied and self._has(words, present, firsts, self.denials):
            learner = present.intersection(self.denied_by_learner)
            labels.denied = not self._has(words, present, learner, self.denied_by_learner)
        if self._has(words, present, firsts, self.label_cues):
            # a mere mention in the sentence before: "his gamertag is Hunter_88. Another
            # coach asked if it's a neo-Nazi code."
            labels.add(before[0] if before is not None else start, end)

    def _has(
        self,
        words: list[str],
        present: set[str],
        firsts: AbstractSet[str],
        phrases: dict[str, tuple[tuple[str, ...], ...]],
    ) -> bool:
        """Whether one of ``phrases`` (by first word) is in ``words``, whose set is
        ``present`` and whose words among the phrases' first words are ``firsts``."""
        return any(
            present.issuperset(p) and _contains(words, p)
            for w in firsts
            for p in phrases.get(w, ())
        )

    def _sentence(
        self,
        piece: _Piece,
        first: int,
        words: list[str],
        found: list[Finding],
        done: set[str],
        cue_before: bool,
        across: bool = False,
        labels: _Labels | None = None,
    ) -> bool | None:
        """Match one sentence (or a piece of a long one) whose first word is word ``first``
        of ``piece``; returns whether it is about a lesson, the news and the like (None when
        that was not needed to decide). ``across``: only the rules read across two sentences."""
        cue: bool | None = None
        end = len(words)
        present = set(words)
        # whether a pattern can match in this sentence at all: its later words, near words,
        # needs and unless are read once per sentence, not at each occurrence of its first word
        viable: dict[str, list[_Compiled]] = {}  # first word → the patterns worth trying
        # the patterns with a word of each set they need here (their first words, later
        # elements', near groups'), in file order, as bits (see _fields)
        bits = 0
        word_bits = self.word_bits
        for word in present:
            b = word_bits.get(word)
            if b is not None:
                bits |= b
        full = (bits + self.lows) & (self.across_guards if across else self.guards)
        by_guard = self.by_guard
        while full:
            low = full & -full
            full ^= low
            c = by_guard[low.bit_length()]
            if c.rule.id not in done and _viable(c, words, present):
                for word in c.firsts & present:
                    viable.setdefault(word, []).append(c)
        if not viable:
            return cue
        muted: set[str] = set()  # mention rules this sentence's lesson or news context mutes
        for i, word in enumerate(words):
            candidates = viable.get(word)
            if candidates is None:
                continue
            for compiled in candidates:
                rule = compiled.rule
                if rule.id in done or rule.id in muted:
                    continue
                follow = compiled.follow.get(word)
                if follow is not None:
                    for after, reach in follow:
                        if not after.isdisjoint(words[i + 1 : i + reach]):
                            break
                    else:
                        continue  # what _match would find, without the calls
                stop = _match(compiled.elements, 0, words, i, end, self.negators)
                if stop is None or stop == i:
                    continue
                if self._negated(words, i):
                    continue
                if rule.mention and i > 0 and words[i - 1] in self.not_before:
                    continue
                if rule.mention:
                    if cue is None:
                        cue = self._has_cue(words)
                    if cue or cue_before or self._cue_later(piece):
                        muted.add(rule.id)
                        continue
                low, high = i, stop
                if compiled.near:
                    span = self._near(compiled, words, i, stop)
                    if span is None:
                        continue
                    low, high = min(low, span[0]), max(high, span[1])
                start, finish = piece.span(first + low, first + high - 1)
                if labels is not None and labels.final and labels.mutes(rule, start):
                    continue  # someone else's label, denied: a later match may count
                words_as_written = " ".join(piece.text[start:finish].split())[:120]
                found.append(Finding(rule, words_as_written, start, finish))
                done.add(rule.id)
        return cue

    def _near(
        self, compiled: _Compiled, words: list[str], i: int, stop: int
    ) -> tuple[int, int] | None:
        """The words spanned by one phrase of each ``near`` group within the rule's window
        of words[i:stop] (a negated one does not count), or None when a group has none."""
        window = compiled.rule.window
        low, high = i, stop
        lo, hi = max(0, i - window), min(len(words), stop + window)
        for group in compiled.near:
            found = None
            for j in range(lo, hi):
                if i <= j < stop:
                    continue  # the pattern's own words do not count as near it
                for phrase in group.get(words[j], ()):
                    n = len(phrase)
                    if j + n <= hi and tuple(words[j : j + n]) == phrase:
                        if not self._negated(words, j):
                            found = (j, j + n)
                        break
                if found:
                    break
            if found is None:
                return None
            low, high = min(low, found[0]), max(high, found[1])
        return low, high

    def _cue_later(self, piece: _Piece) -> bool:
        """Whether the rest of the sentence after this clause (after a ";" or ":") is about
        a lesson or the news: "he asked why ISIS recruits; we discussed grooming"."""
        text, end = piece.text, piece.end
        if end >= len(text) or text[end] not in ";:":
            return False
        rest = _SENTENCE_REST.match(text, end + 1)
        words = [self.stem(w) for w in _WORDS.findall(rest.group())] if rest else []
        return self._has_cue(words)

    def _has_cue(self, words: list[str]) -> bool:
        present = self.cue_first.intersection(words)
        return any(_contains(words, p) for p in self.cues if p[0] in present)

    def _negated(self, words: list[str], i: int) -> bool:
        if any(w in self.negators for w in words[max(0, i - 3) : i]):
            return True
        start = 0
        for n in range(i - 1, -1, -1):
            if words[n] in self.clause_breaks:
                start = n + 1
                break
        clause = words[start:i]
        if self.negation_first.isdisjoint(clause):
            return False
        return any(p[0] in clause and _contains(clause, p) for p in self.negations)


def _fields(knowledge: Knowledge, compiled: list[_Compiled]) -> None:
    """Give each pattern a field of bits: one per set of words it needs one of (its first
    words, each later element's, each near group's), then a guard bit. A sentence's bits are
    those of its words; adding 1 at the bottom of every field carries into the guard of each
    pattern whose sets all have a word in the sentence. So one addition finds, in file order,
    the few patterns worth trying, where looking at each pattern under each word cost most
    of a long e-mail's scan."""
    word_bits: dict[str, int] = {}
    offset = 0
    for item in compiled:
        for words in (item.firsts, *item.also):
            for word in words:
                word_bits[word] = word_bits.get(word, 0) | 1 << offset
            offset += 1
        knowledge.lows |= 1 << (offset - len(item.also) - 1)
        knowledge.guards |= 1 << offset
        if item.rule.across:
            knowledge.across_guards |= 1 << offset
        knowledge.by_guard[offset + 1] = item  # the bit's int.bit_length()
        offset += 1
    knowledge.word_bits = word_bits


def _viable(compiled: _Compiled, words: list[str], present: set[str]) -> bool:
    for words_of in compiled.also:
        if words_of.isdisjoint(present):
            return False
    if compiled.needs_by_first:
        firsts = compiled.needs_first.intersection(present)
        if not firsts:
            return False
        by_first = compiled.needs_by_first
        if not any(
            present.issuperset(p) and _contains(words, p) for w in firsts for p in by_first[w]
        ):
            return False
    if not compiled.unless_by_first:
        return True
    firsts = compiled.unless_first.intersection(present)
    if not firsts:
        return True
    by_first = compiled.unless_by_first
    # every word of the phrase present, before looking for it in order: most phrases of a
    # long list ("was evil", "was a monster") share a common first word and fail here
    return not any(
        present.issuperset(p) and _contains(words, p) for w in firsts for p in by_first[w]
    )


def _contains(words: list[str], phrase: tuple[str, ...]) -> bool:
    first = phrase[0]
    if len(phrase) == 1:
        return first in words
    n = len(phrase)
    start = 0
    while True:
        try:
            i = words.index(first, start)
        except ValueError:
            return False
        if tuple(words[i : i + n]) == phrase:
            return True
        start = i + 1


def _match(
    elements: tuple[_Element, ...],
    k: int,
    words: list[str],
    i: int,
    end: int,
    negators: frozenset[str],
) -> int | None:
    """Where a match of elements[k:] starting at word i ends (exclusive), or None."""
    if k == len(elements):
        return i
    element = elements[k]
    if element.gap:
        j = i
        limit = min(i + element.gap, end)
        while True:
            stop = _match(elements, k + 1, words, j, end, negators)
            if stop is not None:
                return stop
            if j >= limit or words[j] in negators:
                return None
            j += 1
    if i < end:
        for option in element.by_first.get(words[i], ()):
            n = len(option)
            if n > 1 and tuple(words[i : i + n]) != option:
                continue
            stop = _match(elements, k + 1, words, i + n, end, negators)
            if stop is not None:
                return stop
    if element.optional:
        return _match(elements, k + 1, words, i, end, negators)
    return None


# ---------------------------------------------------------------------------- loading


def _compile_pattern(
    pattern: str, classes: dict[str, tuple[tuple[str, ...], ...]], where: str
) -> tuple[_Element, ...]:
    elements: list[_Element] = []
    for piece in pattern.split():
        if piece in _GAP:
            elements.append(_Element(gap=_GAP[piece]))
            continue
        optional = piece.startswith("[") and piece.endswith("]")
        if optional:
            piece = piece[1:-1]
        options: list[tuple[str, ...]] = []
        for alternative in piece.split("|"):
            if alternative.startswith("{") and alternative.endswith("}"):
                name = alternative[1:-1]
                if name not in classes:
                    raise KnowledgeError(f"{where}: unknown class {{{name}}} in {pattern!r}")
                options.extend(classes[name])
            else:
                words = tuple(normalise(alternative.replace("+", " ")))
                if not words:
                    raise KnowledgeError(f"{where}: empty word {alternative!r} in {pattern!r}")
                options.append(words)
        # Longest first, so "black sun" is tried before "black".
        options = sorted(set(options), key=lambda o: -len(o))
        by_first: dict[str, list[tuple[str, ...]]] = {}
        for option in options:
            by_first.setdefault(option[0], []).append(option)
        elements.append(
            _Element(
                options=tuple(options),
                optional=optional,
                by_first={k: tuple(v) for k, v in by_first.items()},
            )
        )
    if not elements or elements[0].gap or elements[0].optional:
        raise KnowledgeError(f"{where}: a pattern must start with a word: {pattern!r}")
    if elements[-1].gap:
        raise KnowledgeError(f"{where}: a pattern must end with a word: {pattern!r}")
    return tuple(elements)


def _follow(
    elements: tuple[_Element, ...],
) -> dict[str, tuple[tuple[frozenset[str], int], ...]]:
    """For each first word, the words one of which must come next (or within a gap after
    it) for a match: the second word of a longer first option, else the words the next
    element needed can start with. Only a condition _match itself imposes."""
    # after a one-word first option: the next element's words, and how far they may be
    after_one: tuple[frozenset[str], int] | None = None
    if len(elements) > 1:
        after, reach = elements[1], 2
        if after.gap and len(elements) > 2:
            after, reach = elements[2], after.gap + 2  # at each of the gap's words and after
        if not after.gap and not after.optional:
            after_one = (frozenset(after.by_first), reach)
    out: dict[str, tuple[tuple[frozenset[str], int], ...]] = {}
    for first, options in elements[0].by_first.items():
        seconds = frozenset(o[1] for o in options if len(o) > 1)
        conditions = [(seconds, 2)] if seconds else []
        if any(len(o) == 1 for o in options):
            if after_one is None:
                continue  # the word alone may match: nothing to require
            conditions.append(after_one)
        out[first] = tuple(conditions)
    return out


def _also(elements: tuple[_Element, ...]) -> tuple[frozenset[str], ...]:
    """The first words of each required element of the pattern after its first."""
    return tuple(
        frozenset(e.by_first) for e in elements[1:] if not e.gap and not e.optional and e.by_first
    )


def _by_first(
    phrases: tuple[tuple[str, ...], ...],
) -> dict[str, tuple[tuple[str, ...], ...]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for phrase in sorted(set(phrases), key=lambda p: -len(p)):
        out.setdefault(phrase[0], []).append(phrase)
    return {k: tuple(v) for k, v in out.items()}


def _spelling(table: Any, sources: dict[str, Any], where: str) -> dict[str, str]:
    """[spelling]: source = "a key of [sources]", words = { variant = "word", ... }."""
    if not isinstance(table, dict):
        raise KnowledgeError(f"{where}: expected a table")
    if table and table.get("source") not in sources:
        raise KnowledgeError(f"{where}: unknown source {table.get('source')!r}")
    words = table.get("words", {})
    if not isinstance(words, dict):
        raise KnowledgeError(f'{where}: words must be a table of variant = "word"')
    out: dict[str, str] = {}
    for variant, word in words.items():
        if not isinstance(word, str) or len(_WORDS.findall(word)) != 1:
            raise KnowledgeError(f"{where}: {variant!r} must be respelt as one word")
        if len(_WORDS.findall(variant)) != 1:
            raise KnowledgeError(f"{where}: {variant!r} is not one word")
        out[variant.lower()] = word.lower()
    return out


def _fuzzy_words(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise KnowledgeError(f"{where}: expected a list of words")
    out = []
    for value in values:
        if not value.isalpha() or len(value) < FUZZY_MIN + 1:
            raise KnowledgeError(f"{where}: {value!r} must be one word of {FUZZY_MIN + 1}+ letters")
        out.append(value.lower())
    return out


def _phrases(values: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise KnowledgeError(f"{where}: expected a list of phrases")
    out = []
    for value in values:
        words = tuple(normalise(value))
        if not words:
            raise KnowledgeError(f"{where}: {value!r} has no words")
        out.append(words)
    return tuple(out)


def _expand(
    values: Any, classes: dict[str, tuple[tuple[str, ...], ...]], where: str
) -> tuple[tuple[str, ...], ...]:
    """Phrases and {class} names, as a list of phrases."""
    if not isinstance(values, list):
        raise KnowledgeError(f"{where}: expected a list")
    out: list[tuple[str, ...]] = []
    for value in values:
        if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
            if value[1:-1] not in classes:
                raise KnowledgeError(f"{where}: unknown class {value}")
            out.extend(classes[value[1:-1]])
        else:
            out.extend(_phrases([value], where))
    return tuple(out)


def load_knowledge(path: Path) -> Knowledge:
    """Read and compile a knowledge file; a mistake names the file and the rule."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise KnowledgeError(f"{path}: {err}") from err
    sources = data.get("sources", {})
    classes: dict[str, tuple[tuple[str, ...], ...]] = {}
    rules_only: set[str] = set()
    for name, spec in data.get("classes", {}).items():
        values = spec.get("phrases") if isinstance(spec, dict) else spec
        if isinstance(spec, dict) and spec.get("source") not in sources:
            raise KnowledgeError(f"{path}: class {name}: unknown source {spec.get('source')!r}")
        if isinstance(spec, dict) and "model" in spec:
            if not isinstance(spec["model"], bool):
                raise KnowledgeError(f"{path}: class {name}: model must be true or false")
            if not spec["model"]:
                rules_only.add(name)
        classes[name] = _phrases(values, f"{path}: class {name}")
    language = data.get("language", {})
    rules: list[Rule] = []
    compiled: list[_Compiled] = []
    seen: set[str] = set()
    for n, raw in enumerate(data.get("rule", []), 1):
        rule_id = str(raw.get("id") or f"#{n}")
        where = f"{path}: rule {rule_id}"
        if rule_id in seen:
            raise KnowledgeError(f"{where}: duplicate id")
        seen.add(rule_id)
        allowed = {
            "id",
            "indicators",
            "source",
            "mention",
            "patterns",
            "needs",
            "unless",
            "note",
            "near",
            "window",
            "across",
            "fallback",
        }
        unknown = set(raw) - allowed
        if unknown:
            raise KnowledgeError(f"{where}: unknown keys {sorted(unknown)}")
        if raw.get("source") not in sources:
            raise KnowledgeError(f"{where}: source {raw.get('source')!r} is not in [sources]")
        indicators = tuple(raw.get("indicators") or ())
        patterns = tuple(raw.get("patterns") or ())
        if not indicators or not patterns:
            raise KnowledgeError(f"{where}: needs indicators and patterns")
        needs = _expand(raw.get("needs", []), classes, f"{where}: needs")
        unless = _expand(raw.get("unless", []), classes, f"{where}: unless")
        near_raw = raw.get("near", [])
        if not isinstance(near_raw, list) or not all(isinstance(g, list) for g in near_raw):
            raise KnowledgeError(f"{where}: near must be a list of lists of phrases")
        near = tuple(_expand(g, classes, f"{where}: near") for g in near_raw)
        window = raw.get("window", 10 if near else 0)
        if not isinstance(window, int) or isinstance(window, bool) or not 0 <= window <= 40:
            raise KnowledgeError(f"{where}: window must be a number of words from 0 to 40")
        rule = Rule(
            rule_id,
            indicators,
            str(raw["source"]),
            bool(raw.get("mention", False)),
            patterns,
            needs,
            unless,
            str(raw.get("note", "")),
            near,
            window,
            bool(raw.get("across", False)),
            bool(raw.get("fallback", False)),
        )
        rules.append(rule)
        near_index = tuple(_by_first(group) for group in near)
        needs_index, unless_index = _by_first(needs), _by_first(unless)
        for pattern in patterns:
            elements = _compile_pattern(pattern, classes, where)
            compiled.append(
                _Compiled(
                    rule,
                    elements,
                    elements[0].options,
                    near_index,
                    _also(elements) + tuple(frozenset(group) for group in near_index),
                    frozenset(p[0] for p in needs),
                    frozenset(p[0] for p in unless),
                    frozenset(option[0] for option in elements[0].options),
                    _follow(elements),
                    needs_index,
                    unless_index,
                )
            )
    knowledge = Knowledge(
        sources=dict(sources),
        classes=classes,
        rules=tuple(rules),
        cues=_phrases(language.get("discussion_cues", []), f"{path}: language"),
        negators=frozenset(w for p in _phrases(language.get("negators", []), "") for w in p),
        negations=_phrases(language.get("clause_negations", []), f"{path}: language"),
        clause_breaks=frozenset(
            w for p in _phrases(language.get("clause_breaks", []), "") for w in p
        ),
    )
    knowledge.not_before = frozenset(
        w for p in _phrases(language.get("not_before", []), f"{path}: language") for w in p
    )
    label_lists = [
        _phrases(language.get(key, []), f"{path}: language")
        for key in ("label_cues", "denials", "denied_by_learner")
    ]
    knowledge.label_cues, knowledge.denials, knowledge.denied_by_learner = map(
        _by_first, label_lists
    )
    # a sentence without one of these first words is neither a label nor a denial
    knowledge.label_first = frozenset(p[0] for phrases in label_lists[:2] for p in phrases)
    knowledge.cue_first = frozenset(p[0] for p in knowledge.cues)
    knowledge.rules_only = frozenset(rules_only)
    knowledge.negation_first = frozenset(p[0] for p in knowledge.negations)
    knowledge.across_ids = frozenset(r.id for r in rules if r.across)
    knowledge.spelling = _spelling(data.get("spelling", {}), sources, f"{path}: spelling")
    for word in _fuzzy_words(language.get("fuzzy", []), f"{path}: language: fuzzy"):
        for key in (word, *_deletions(word)):
            knowledge.fuzzy.setdefault(key, word)
    vocabulary: set[str] = {w for phrases in classes.values() for p in phrases for w in p}
    for item in compiled:
        vocabulary.update(w for e in item.elements for o in e.options for w in o)
        vocabulary.update(w for g in item.rule.near for p in g for w in p)
        vocabulary.update(w for p in item.rule.needs + item.rule.unless for w in p)
    vocabulary.update(w for p in knowledge.cues for w in p)
    knowledge.vocabulary = frozenset(vocabulary)
    _fields(knowledge, compiled)
    for item in compiled:
        for first in {option[0] for option in item.first}:
            knowledge.index.setdefault(first, []).append(item)
            if item.rule.across:
                knowledge.across_index.setdefault(first, []).append(item)
    return knowledge


def iter_sources(knowledge: Knowledge) -> Iterator[tuple[str, str]]:
    """(rule id, source text) for every rule: what the docs and tests check."""
    for rule in knowledge.rules:
        yield rule.id, knowledge.sources[rule.source]
