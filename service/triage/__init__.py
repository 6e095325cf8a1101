"""Triage of a concern's wording: which policy indicators and signs of immediate danger the
words suggest, and which words suggested them (the DSP decides).

The knowledge is data (``knowledge.toml`` beside this file, every entry with its source); the
matcher (``engine.py``) is a small, dependency-free phrase matcher over normalised words.
``service.indicators`` holds the policy's indicators and is what the rest of the service calls.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from service.triage.engine import Finding, Knowledge, KnowledgeError, Rule, load_knowledge

__all__ = ["KNOWLEDGE_FILE", "Finding", "Knowledge", "KnowledgeError", "Rule", "knowledge"]

KNOWLEDGE_FILE = Path(str(resources.files("service.triage").joinpath("knowledge.toml")))


@cache
def knowledge() -> Knowledge:
    """The shipped knowledge file, compiled once per process."""
    return load_knowledge(KNOWLEDGE_FILE)
