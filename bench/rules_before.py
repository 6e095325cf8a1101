"""What the rules said about each labelled file before they were tuned on it.

    python bench/rules_before.py      # writes bench/triage/rules_before.json (a minute or two)

Each labelled file was committed before any rule was changed for it, so the rules of the
commit that added a file had never seen it: their verdicts on it are an honest "unseen"
figure for the rules, which the rules of today (tuned on every file) cannot give. Where the
old tree has the learned layer, it is left out (``learned=False``): the rules alone. The bench
(`bench_triage.py --lofo`) pairs them with the learned model trained without that file, to
show what "rules OR model" does on wording neither had seen. Needs git and the repository's
history; never reads heldout2.toml (the unseen set the lead measures).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_triage

ROOT = Path(__file__).resolve().parents[1]
OUT = train_triage.HERE / "rules_before.json"

# Run inside the old checkout: its own service.indicators, the current file's cases.
_PROBE = """
import json, sys, tomllib
sys.path.insert(0, sys.argv[1])
from service.indicators import suggest_from_text
try:
    from service.indicators import assess
except ImportError:
    assess = None
cases = tomllib.loads(sys.stdin.read())["case"]
out = {}
for c in cases:
    if assess is not None:
        try:  # the rules alone, where the learned layer exists beside them
            a = assess(c["text"], learned=False)
        except TypeError:
            a = assess(c["text"])
        out[c["id"]] = [any(s.indicator.critical for s in a.suggestions), bool(a.danger)]
    else:
        out[c["id"]] = [any(i.critical for i in suggest_from_text(c["text"])), False]
print(json.dumps(out))
"""


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    result: dict[str, object] = {
        "about": (
            "Verdicts of the rules as they were in the commit that added each labelled file "
            "(before any rule was tuned on it). Written by bench/rules_before.py."
        ),
        "files": {},
    }
    files: dict[str, object] = {}
    for path in train_triage.TRAIN_FILES:
        relative = path.relative_to(ROOT).as_posix()
        added = _git("log", "--diff-filter=A", "--format=%H", "--", relative).splitlines()
        if not added:
            print(f"{relative}: not committed yet, skipped")
            continue
        commit = added[-1]
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "tree"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), commit],
                check=True,
            )
            try:
                probe = subprocess.run(
                    [sys.executable, "-c", _PROBE, str(tree)],
                    input=path.read_text(encoding="utf-8"),
                    capture_output=True,
                    text=True,
                    cwd=tmp,
                )
            finally:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=True,
                )
        if probe.returncode != 0:
            print(f"{relative}: the rules of {commit[:7]} could not run, skipped")
            continue
        files[path.name] = {"commit": commit[:12], "verdicts": json.loads(probe.stdout)}
        print(f"{relative}: rules of {commit[:7]}")
    result["files"] = files
    OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
