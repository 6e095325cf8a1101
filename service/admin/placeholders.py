"""Placeholders left in a config: ``check`` fails on each one, by key, outside a demo.

``init`` writes a config full of ``example.org`` addresses and the Microsoft 365 example has
``00000000-…`` ids. Left as they are, a service switched to SMTP or Graph would send the DSP's
alerts to example.org, and nobody would notice until a concern went unread. A folder made by
``init --demo`` says ``demo = true`` at the top of its config: invented people are the point of
a demo, so placeholders pass there (the line says to remove it for real use; example.org
takes no mail, so a demo pointed at a real server still reaches nobody).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from service.config import Config

# Names the RFCs and Microsoft's documentation reserve or use for examples (RFC 2606/6761:
# example.*, .test, .example, .invalid, .localhost; Microsoft: Contoso, Fabrikam).
_PLACEHOLDER_LABELS = frozenset({"example", "contoso", "fabrikam"})
_RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})
_ADDRESS = re.compile(r"[^@\s<>,;\"']+@([A-Za-z0-9.-]+)")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")


def is_placeholder_host(host: str) -> bool:
    labels = host.strip().lower().rstrip(".").split(".")
    return labels[-1] in _RESERVED_TLDS or any(label in _PLACEHOLDER_LABELS for label in labels)


def _placeholder_id(value: str) -> bool:
    """``00000000-0000-…``, ``11111111-1111-…``: one digit repeated is no real Entra id."""
    value = value.strip()
    if _GUID.match(value):
        return len(set(value.replace("-", "").lower())) == 1
    return "." in value and is_placeholder_host(value)  # a tenant may be named by its domain


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            if name != "source":
                yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            part = key if re.fullmatch(r"[A-Za-z0-9_-]+", str(key)) else f'"{key}"'
            yield from _walk(item, f"{path}.{part}")
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            yield from _walk(item, f"{path}[{n}]")
    else:
        yield path, value


def _why(key: str, value: str) -> str | None:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in {"tenant_id", "client_id"}:
        if _placeholder_id(value):
            return f"{value!r} is a placeholder id: copy it from the app registration"
        return None
    if key.startswith("organisation.domains["):
        return f"{value!r} is a placeholder domain" if is_placeholder_host(value) else None
    found = [m for m in _ADDRESS.finditer(value) if is_placeholder_host(m.group(1))]
    if found:
        return f"{found[0].group(0)!r} is a placeholder address"
    host = urlsplit(value).hostname if value.startswith(("http://", "https://")) else None
    if leaf == "site_host":
        host = value
    if host and is_placeholder_host(host):
        return f"{value!r} is a placeholder {'host' if leaf == 'site_host' else 'link'}"
    if "placeholder" in value.lower() and key.startswith("areas."):
        return f"{value!r} says it is a placeholder"
    return None


def placeholder_keys(config: Config) -> list[tuple[str, str]]:
    """(key, why) for every value that is still an example, in the order the config has them."""
    found = []
    for key, value in _walk(config, ""):
        if isinstance(value, str):
            why = _why(key, value)
            if why:
                found.append((key, why))
    return found
