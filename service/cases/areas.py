"""Which configured area (``[areas]``) a concern is about, and whose referral contacts its
alert shows.

A form asks for the centre or area; an e-mail does not, but its text often names one
("at the Leamington centre"). Names and aliases found in an e-mail's subject and text give a
*suggested* area, labelled as such in the register (as suggested indicators are): the DSP
decides. The alert then lists that area's referral contacts; when no area is found, or the
text names several, every matching (or every) area's contacts are listed — a missing contact
is worse than a longer list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from service.config import Area

SUGGESTED_NOTE = "(suggested from the e-mail text)"


def _names(name: str, area: Area) -> list[str]:
    return [n for n in (name, *area.aliases) if n and n.strip()]


def _mentions(text: str, phrase: str) -> bool:
    """``phrase`` as whole words in ``text``, ignoring case and runs of spaces."""
    words = [re.escape(w) for w in phrase.split()]
    if not words:
        return False
    return re.search(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", text, re.IGNORECASE) is not None


def areas_named(text: str, areas: Mapping[str, Area]) -> list[str]:
    """The configured areas whose name or an alias appears in ``text``, in config order."""
    return [
        name for name, area in areas.items() if any(_mentions(text, n) for n in _names(name, area))
    ]


def suggested_area_cell(text: str, areas: Mapping[str, Area]) -> str:
    """The register's "Centre/area" cell for an e-mail: the areas its text names, labelled as
    a suggestion (``Warwickshire (suggested from the e-mail text)``); empty when none."""
    found = areas_named(text, areas)
    return f"{', '.join(found)} {SUGGESTED_NOTE}" if found else ""


def contacts_for(area_text: str, areas: Mapping[str, Area]) -> list[dict[str, Any]]:
    """The referral contacts of the areas ``area_text`` names (a form's answer, or the
    register's suggested cell); every area's when it names none."""
    suggested = area_text.endswith(SUGGESTED_NOTE)
    chosen = areas_named(area_text, areas) if area_text.strip() else []
    label = " (suggested from the e-mail's wording)" if suggested and chosen else ""
    return [
        {"area": f"{name}{label}", "contacts": [c.model_dump() for c in areas[name].contacts]}
        for name in (chosen or list(areas))
    ]
