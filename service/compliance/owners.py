"""Owner cells → e-mail addresses, through the config's ``[roles]``.

Managers write owners as roles, the way the plan does: ``"Executive Director"``,
``"Training Managers; All staff"``, ``"Operations Director, Training Managers"``,
``"Executive Director and Operations Director"``, one per line, or (copied from the PDF)
``"Training Managers All staff"`` with nothing between. Matching ignores case and spacing.
An e-mail address in the cell is used as it is. Any part that is not a known role is kept and
reported ("unknown role"), never dropped; the known parts still get their reminders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.config import EMAIL_RE

_SEPARATORS = re.compile(r"(\s*(?:;|,|\n|\r|&|\+|/|\band\b)\s*)", re.IGNORECASE)
_ANGLE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Owners:
    """One owner cell, resolved."""

    text: str
    addresses: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()  # role names as the config spells them
    unknown: tuple[str, ...] = ()  # parts that are not a role or an address, as written
    empty_roles: tuple[str, ...] = ()  # roles that exist but list no addresses

    @property
    def problem(self) -> str | None:
        parts = []
        if not self.text.strip():
            parts.append("no owner")
        if self.unknown:
            quoted = ", ".join(repr(u) for u in self.unknown)
            parts.append(f"unknown role {quoted} (not in [roles] of the config)")
        if self.empty_roles:
            quoted = ", ".join(repr(r) for r in self.empty_roles)
            parts.append(f"role {quoted} has no addresses in [roles]")
        return "; ".join(parts) or None


class RoleBook:
    """The ``[roles]`` table, normalised once so that a 1,000-row plan resolves quickly."""

    def __init__(self, roles: Mapping[str, Sequence[str]]) -> None:
        self._roles: dict[str, tuple[str, tuple[str, ...]]] = {
            norm(name): (name, tuple(addresses)) for name, addresses in roles.items()
        }
        self._max_words = max((len(k.split()) for k in self._roles), default=1)

    def addresses(self, role: str) -> tuple[str, ...]:
        found = self._roles.get(norm(role))
        return found[1] if found else ()

    def known(self, role: str) -> bool:
        return norm(role) in self._roles

    def resolve(self, value: object) -> Owners:
        text = "" if value is None else str(value)
        if not text.strip():
            return Owners(text="")
        addresses: list[str] = []
        roles: list[str] = []
        unknown: list[str] = []
        empty: list[str] = []
        for part in self._parts(text):
            address = _address(part)
            if address:
                addresses.append(address)
                continue
            matched = self._segment(part)
            if matched is None:
                unknown.append(" ".join(part.split()))
                continue
            for key in matched:
                name, emails = self._roles[key]
                roles.append(name)
                if emails:
                    addresses.extend(emails)
                else:
                    empty.append(name)
        return Owners(
            text=" ".join(text.split()),
            addresses=tuple(dict.fromkeys(addresses)),
            roles=tuple(dict.fromkeys(roles)),
            unknown=tuple(dict.fromkeys(unknown)),
            empty_roles=tuple(dict.fromkeys(empty)),
        )

    def _parts(self, text: str) -> list[str]:
        """Split on separators, but keep a role whose own name contains one ("Training and
        Development Manager") by re-joining neighbours when that makes a known role."""
        if norm(text) in self._roles:
            return [text]
        tokens = _SEPARATORS.split(text)  # [piece, separator, piece, separator, piece…]
        pieces = tokens[::2]
        parts: list[str] = []
        i = 0
        while i < len(pieces):
            end = i
            for j in range(len(pieces) - 1, i, -1):
                if norm("".join(tokens[2 * i : 2 * j + 1])) in self._roles:
                    end = j
                    break
            joined = "".join(tokens[2 * i : 2 * end + 1])
            if joined.strip():
                parts.append(joined)
            i = end + 1
        return parts

    def _segment(self, part: str) -> list[str] | None:
        """``part`` as one or more role names written with only spaces between them."""
        words = norm(part).split()
        if not words:
            return []
        # best[i]: a segmentation of words[i:], or None. Longest role first.
        best: list[list[str] | None] = [None] * (len(words) + 1)
        best[len(words)] = []
        for i in range(len(words) - 1, -1, -1):
            for j in range(min(len(words), i + self._max_words), i, -1):
                key = " ".join(words[i:j])
                rest = best[j]
                if key in self._roles and rest is not None:
                    best[i] = [key, *rest]
                    break
        return best[0]


def _address(part: str) -> str | None:
    angle = _ANGLE.search(part)
    candidate = angle.group(1) if angle else part.strip()
    return candidate if EMAIL_RE.match(candidate) else None
