"""Record what the rules say about every labelled narrative, so a speed change can be checked
to change no verdict and no explanation.

    PYTHONPATH=. .venv/bin/python tests/service/triage_golden.py   # rewrite the fixture

The fixture (tests/service/triage_golden.json) holds, for each case of bench/triage/tuning*.toml,
and the spent heldout*.toml (never heldout5.toml: only the lead reads it), the rules' result:
each suggestion's indicator, matched words and rule, and each danger sign. The learned layer
is left out: it is trained elsewhere and changes with its model, not with the matcher. A few
long synthetic bodies (the bench's) are recorded too, with the rules' findings, so the scan of
long text is held to the same result.
"""

from __future__ import annotations

import json
import random
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "bench" / "triage"
FIXTURE = Path(__file__).with_name("triage_golden.json")
UNSEEN = "heldout5.toml"  # the fresh held-out set only the lead reads (bench/train_triage.UNSEEN)


def corpus_files() -> list[Path]:
    names = sorted(p.name for p in CORPUS.glob("tuning*.toml"))
    spent = sorted(p.name for p in CORPUS.glob("heldout*.toml") if p.name != UNSEEN)
    return [CORPUS / n for n in (*names, *spent)]


@cache
def cases() -> tuple[tuple[str, str], ...]:
    """(file:id, text) of every labelled narrative allowed here."""
    out = []
    for path in corpus_files():
        assert path.name != UNSEEN
        with path.open("rb") as handle:
            for case in tomllib.load(handle)["case"]:
                out.append((f"{path.name}:{case['id']}", str(case["text"])))
    return tuple(out)


# Words of ordinary concern e-mails, some of which start rules: the long bodies here and
# bench/bench_triage.py's 5 MB bodies are made of them.
_WORDS = (
    "the a he she they learner apprentice tutor said told me about his her their group online "
    "friends family college work placement session week today worried seems isolated quiet "
    "angry upset talked news video videos watching phone class lesson break lunch again who "
    "was is were are not never would should only way people all some more going to will "
    "support praised joined contact older man messaging meet private chat channel knife bag "
    "attack shooter hero justified violence mosque tonight friday travel syria fight flag "
    "tattoo changed behaviour appearance manifesto extremist far right isis recruit"
)
VOCABULARY = _WORDS.split(" ")


@cache
def long_bodies() -> dict[str, str]:
    """Long texts: random sentences of the bench's vocabulary, with and without full stops,
    and each labelled narrative buried after 150,000 characters of them."""
    out: dict[str, str] = {}
    for seed in (7, 11, 23):
        rng = random.Random(seed)
        parts, length = [], 0
        while length < 400_000:
            n = rng.randint(6, 30)
            sentence = " ".join(rng.choice(VOCABULARY) for _ in range(n)).capitalize() + ". "
            parts.append(sentence)
            length += len(sentence)
        body = "".join(parts)
        out[f"varied-{seed}"] = body
        out[f"run-on-{seed}"] = body.replace(". ", " ")
    filler = "The learner was quiet in class today and talked about work. " * 2_500
    for key, text in cases()[::7]:
        out[f"buried:{key}"] = filler + text
    return out


def rules_result(text: str) -> dict[str, Any]:
    from service.indicators import assess

    result = assess(text, learned=False)
    return {
        "suggestions": [[s.indicator.key, s.matched, s.rule] for s in result.suggestions],
        "danger": [[d.matched, d.rule] for d in result.danger],
    }


def record() -> dict[str, Any]:
    return {
        "cases": {key: rules_result(text) for key, text in cases()},
        "long": {key: rules_result(text) for key, text in long_bodies().items()},
    }


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    FIXTURE.write_text(json.dumps(record(), indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {FIXTURE}")
