"""Train the learned triage layer (service/triage/learned.py) on the labelled narratives.

    python bench/train_triage.py            # retrain and write service/triage/learned_model.json
    python bench/train_triage.py --date 2026-12-04 --out /tmp/m.json   # the test's reproduction

Reads the labelled files in TRAIN_FILES (every tuning*.toml and every spent heldout*.toml; never
heldout5.toml: that set is kept unseen for the lead's one honest measure, and any file named
as unseen is refused), trains one logistic regression for "critical" and one for "danger", and
writes their weights as JSON with a header naming the files (and their SHA-256), the number
of cases and the date. The threshold of each model is chosen here, from leave-one-file-out
predictions (train on the other files, score the one left out: the files were written by
different people at different times, so this mimics unseen wording): the lowest threshold
whose false alarms there stay within TARGET_FALSE_ALARMS. Over-alerting is the safe side.

Why a pure-Python trainer and not scikit-learn: it is deterministic to the byte (a fixed
order, no threads, no BLAS), so "train twice, get the same file" is a test that runs
anywhere without a dev extra; and with a few hundred short texts it trains in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.triage import knowledge
from service.triage.learned import (
    MIN_WORDS,
    MODEL_FILE,
    SKIP_WINDOW,
    features,
    scale,
    sentences,
    sets_aside,
    word_count,
)

HERE = Path(__file__).resolve().parent / "triage"
# Every labelled file but the unseen one. A new tuning file is picked up by its name.
# heldout2.toml, heldout3.toml and heldout4.toml were each the unseen set until their misses
# were printed (4 and 5 December 2026): spent, so trained on. heldout5.toml is the fresh one:
# never read, never trained or tuned on.
UNSEEN = frozenset({"heldout5.toml"})
TRAIN_FILES = tuple(
    sorted(
        {p for p in HERE.glob("tuning*.toml")}
        | {p for p in HERE.glob("heldout*.toml") if p.name not in UNSEEN},
        key=lambda p: p.name,
    )
)
assert all(p.name not in UNSEEN for p in TRAIN_FILES)

# Chosen by 5-fold cross-validation on the training files (docs/triage.md has the figures).
L2 = 1e-3
EPOCHS = 40
RATE = 0.2
SEED = 11
MIN_COUNT = 2  # a feature seen in fewer narratives is dropped: it cannot generalise
POSITIVE_WEIGHT = 1.0  # a positive case counts this much more than its class share
DIGITS = 4  # weights are rounded: a small, stable file
# The threshold is chosen for what an alert uses, the rules OR the model, on wording neither
# had seen: each file's rules-of-then verdicts (RULES_BEFORE) beside the model trained without
# it. Critical: false alarms of the two together within 9% (the target is 10%; over-alerting
# is the safe side). Danger is stricter: a danger flag opens the alert with "call 999 first".
TARGET_FALSE_ALARMS = {"critical": 0.09, "danger": 0.03}
RULES_BEFORE = HERE / "rules_before.json"
LABELS = ("critical", "danger")


@dataclass(frozen=True)
class Case:
    id: str
    file: str
    text: str
    critical: bool
    danger: bool


def load_cases(paths: Sequence[Path] = TRAIN_FILES) -> list[Case]:
    cases: list[Case] = []
    for path in paths:
        if any(path.name.startswith(Path(name).stem) for name in UNSEEN):  # a copy too
            raise SystemExit(f"{path}: the unseen set is never trained on")
        with path.open("rb") as handle:
            for raw in tomllib.load(handle)["case"]:
                cases.append(
                    Case(
                        str(raw["id"]),
                        path.name,
                        str(raw["text"]),
                        bool(raw["critical"]),
                        bool(raw["danger"]),
                    )
                )
    return cases


def featurise(cases: Sequence[Case]) -> list[list[str]]:
    """Each case's features, as the run time reads a text of up to three sentences."""
    known = knowledge()
    return [sorted(features(c.text, known)) for c in cases]


def label(case: Case, name: str) -> bool:
    return case.critical if name == "critical" else case.danger


def fit(rows: Sequence[Sequence[str]], ys: Sequence[bool]) -> tuple[float, dict[str, float]]:
    """L2-regularised logistic regression by AdaGrad over binary features, in a fixed order
    (a seeded shuffle per epoch): the same rows give the same weights, to the bit. The
    classes are weighted to count equally (danger is rare)."""
    counts: dict[str, int] = {}
    for row in rows:
        for f in row:
            counts[f] = counts.get(f, 0) + 1
    kept = [[f for f in row if counts[f] >= MIN_COUNT] for row in rows]
    positives = sum(ys)
    negatives = len(ys) - positives
    if not positives or not negatives:
        raise ValueError("both classes are needed to train")
    weight_of = {
        True: POSITIVE_WEIGHT * len(ys) / (2 * positives),
        False: len(ys) / (2 * negatives),
    }
    w: dict[str, float] = {}
    g2: dict[str, float] = {}
    bias, bias_g2 = 0.0, 0.0
    rng = random.Random(SEED)
    order = list(range(len(rows)))
    for _ in range(EPOCHS):
        rng.shuffle(order)
        for n in order:
            row, y = kept[n], ys[n]
            x = scale(len(rows[n]))
            z = bias + x * sum(w.get(f, 0.0) for f in row)
            p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            grad = (p - y) * weight_of[y]
            bias_g2 += grad * grad
            bias -= RATE * grad / math.sqrt(bias_g2)
            for f in row:
                old = w.get(f, 0.0)
                step = grad * x + L2 * old
                g2[f] = g2.get(f, 0.0) + step * step
                w[f] = old - RATE * step / math.sqrt(g2[f])
    weights = {f: round(v, DIGITS) for f, v in sorted(w.items()) if round(v, DIGITS) != 0.0}
    return round(bias, DIGITS), weights


def probability(bias: float, weights: dict[str, float], row: Sequence[str]) -> float:
    z = bias + scale(len(row)) * sum(weights.get(f, 0.0) for f in row)
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def out_of_fold(
    cases: Sequence[Case], rows: Sequence[Sequence[str]], name: str, folds: list[list[int]]
) -> list[float]:
    """Each case's probability from a model trained without its fold."""
    probs = [0.0] * len(cases)
    for test in folds:
        held = set(test)
        train = [i for i in range(len(cases)) if i not in held]
        bias, weights = fit([rows[i] for i in train], [label(cases[i], name) for i in train])
        for i in test:
            probs[i] = probability(bias, weights, rows[i])
    return probs


def file_folds(cases: Sequence[Case]) -> list[list[int]]:
    files = sorted({c.file for c in cases})
    return [[i for i, c in enumerate(cases) if c.file == f] for f in files]


def k_folds(cases: Sequence[Case], k: int = 5) -> list[list[int]]:
    """Stratified by (critical, danger), in a seeded order: the same folds every run."""
    order = list(range(len(cases)))
    random.Random(SEED).shuffle(order)
    order.sort(key=lambda i: (cases[i].critical, cases[i].danger))
    folds: list[list[int]] = [[] for _ in range(k)]
    for n, i in enumerate(order):
        folds[n % k].append(i)
    return folds


def rules_then(cases: Sequence[Case], name: str) -> list[bool | None]:
    """Each case's verdict by the rules of the commit that added its file (before they were
    tuned on it), from RULES_BEFORE; None where there is none (a file not yet in it)."""
    if not RULES_BEFORE.exists():
        return [None] * len(cases)
    files = json.loads(RULES_BEFORE.read_text(encoding="utf-8"))["files"]
    column = LABELS.index(name)
    out: list[bool | None] = []
    for case in cases:
        said = files.get(case.file, {}).get("verdicts", {}).get(case.id)
        out.append(None if said is None else bool(said[column]))
    return out


def choose_threshold(
    probs: Sequence[float],
    ys: Sequence[bool],
    target: float,
    rules: Sequence[bool | None] | None = None,
    veto: float = 0.0,
    sizes: Sequence[int] | None = None,
) -> float:
    """The lowest threshold (of the out-of-fold probabilities, to 2 places) whose false
    alarms stay within ``target``: recall first, over-alerting is the safe side. The false
    alarms counted are those of an alert: the model over the threshold, or the rules then
    with the model not under ``veto``; on the cases with a rules-then verdict (the model's
    alone where there is none)."""
    said = list(rules) if rules is not None else [None] * len(probs)
    if not any(s is not None for s in said):
        said = [False] * len(probs)
    counts = list(sizes) if sizes is not None else [MIN_WORDS] * len(probs)
    negatives = [
        (p, bool(s), n)
        for p, y, s, n in zip(probs, ys, said, counts, strict=True)
        if not y and s is not None
    ]
    for step in range(max(1, round(veto * 100)), 100):
        threshold = step / 100
        alarms = sum(flagged(p, s, threshold, veto, n) for p, s, n in negatives)
        if alarms <= target * len(negatives):
            return threshold
    return 0.99


def flagged(
    probability: float, rules_said: bool, threshold: float, veto: float, words: int
) -> bool:
    """What an alert does with a critical verdict (service/triage/learned.add_learned)."""
    return probability >= threshold or (rules_said and not sets_aside(probability, words, veto))


def word_counts(cases: Sequence[Case]) -> list[int]:
    """Each case's words, as the run time counts them for ``flagged``."""
    return [word_count(sentences(c.text)) for c in cases]


def choose_veto(
    probs: Sequence[float],
    ys: Sequence[bool],
    target: float,
    rules: Sequence[bool | None],
    sizes: Sequence[int],
) -> tuple[float, float]:
    """(threshold, veto) for critical: of the vetoes 0, 0.05 … 0.5, the one whose threshold
    (chosen as above, for the same false alarms) finds the most critical narratives that the
    rules then or the model had not seen; on a tie the lower veto (fewer rule flags set
    aside). A rule that names things fires on lessons and the news in wording nobody wrote an
    exception for; below the veto the model, reading the whole, overrules it."""
    counted = [
        (p, bool(s), y, n)
        for p, y, s, n in zip(probs, ys, rules, sizes, strict=True)
        if s is not None
    ]
    allowed = target * sum(not y for _, _, y, _ in counted)
    best: tuple[bool, int, float, float] | None = None
    for step in range(0, 11):
        veto = step / 20
        threshold = choose_threshold(probs, ys, target, rules, veto, sizes)
        said = [(flagged(p, s, threshold, veto, n), y) for p, s, y, n in counted]
        within = sum(f and not y for f, y in said) <= allowed
        found = sum(f and y for f, y in said)
        # Within the target first (a veto of 0 may never be), then the most found.
        if best is None or (within, found) > best[:2]:
            best = (within, found, threshold, veto)
    assert best is not None
    return best[2], best[3]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_model(paths: Sequence[Path] = TRAIN_FILES, *, date: str) -> dict[str, object]:
    cases = load_cases(paths)
    rows = featurise(cases)
    models: dict[str, object] = {}
    for name in LABELS:
        ys = [label(c, name) for c in cases]
        probs = out_of_fold(cases, rows, name, file_folds(cases))
        said = rules_then(cases, name)
        target = TARGET_FALSE_ALARMS[name]
        if name == "critical" and any(s is not None for s in said):
            threshold, veto = choose_veto(probs, ys, target, said, word_counts(cases))
        else:  # danger: a rule's danger sign always stands (a weapon, a time, a target)
            threshold, veto = choose_threshold(probs, ys, target, said), 0.0
        bias, weights = fit(rows, ys)
        models[name] = {"threshold": threshold, "veto": veto, "bias": bias, "weights": weights}
    return {
        "about": (
            "Weights of the learned triage layer (service/triage/learned.py): logistic "
            "regression over word stems, stem pairs, content-word pairs a few apart, knowledge "
            "classes and pairs of classes. "
            "Data, written by bench/train_triage.py; retrain with that command, do not edit."
        ),
        "trained": date,
        "trained_on": [
            {
                "file": f"bench/triage/{p.name}",
                "sha256": sha256(p),
                "cases": sum(c.file == p.name for c in cases),
            }
            for p in paths
        ],
        "settings": {
            "l2": L2,
            "epochs": EPOCHS,
            "rate": RATE,
            "seed": SEED,
            "min_count": MIN_COUNT,
            "skip_window": SKIP_WINDOW,
            "positive_weight": POSITIVE_WEIGHT,
            "threshold_rule": "lowest threshold (and, for critical, the veto under which a "
            "rule's flag is set aside that finds the most) with leave-one-file-out false "
            "alarms of the rules then and the model together within "
            + ", ".join(f"{k} {v:.0%}" for k, v in TARGET_FALSE_ALARMS.items()),
        },
        "models": models,
    }


def dump(data: dict[str, object]) -> str:
    return json.dumps(data, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=MODEL_FILE)
    parser.add_argument(
        "--date", default=datetime.now(UTC).date().isoformat(), help="for the header"
    )
    args = parser.parse_args()
    data = train_model(date=args.date)
    args.out.write_text(dump(data), encoding="utf-8")
    models = data["models"]
    assert isinstance(models, dict)
    for name in LABELS:
        m = models[name]
        print(f"{name}: threshold {m['threshold']}, veto {m['veto']}, {len(m['weights'])} weights")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
