"""Reporters outside the organisation's own mail domains (``organisation.domains``).

Anyone may raise a concern — an employer, a parent, a placement provider — so an external
sender's message is logged and alerted like any other (never drop a concern); the alert says
the sender is external. But the From of an e-mail is easily forged, so an acknowledgement to an
external address is backscatter waiting to happen: they are a setting
(``intake.acknowledge_external``, on by default), and at most one goes to an external address a
day. The ledger keeps a hash of the address, never the address.
"""

from __future__ import annotations

import hashlib
import logging

from service.app import App
from service.config import EMAIL_RE, Config

log = logging.getLogger("prevent_service.intake")

_KEY = "ack.external:"  # kv: ack.external:<address hash>:<local date> -> the reference acked


def is_external(config: Config, address: str | None) -> bool:
    """A well-formed address outside the organisation's domains (no address: not external)."""
    address = (address or "").strip()
    return bool(EMAIL_RE.match(address)) and not config.organisation.is_internal(address)


def may_acknowledge(app: App, address: str, reference: str) -> bool:
    """Whether ``reference``'s acknowledgement may go to ``address``. For an external address
    this claims the day's one acknowledgement (a retry of the same reference keeps it)."""
    if not is_external(app.config, address):
        return True
    if not app.config.intake.acknowledge_external:
        log.info("%s: no acknowledgement (external sender; intake.acknowledge_external)", reference)
        return False
    today = app.local_now().date().isoformat()
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:24]
    key = f"{_KEY}{digest}:{today}"
    held = app.ledger.get(key)
    if held is None:
        # Yesterday's claims are spent: keep the table small.
        app.ledger.db.execute(
            "DELETE FROM kv WHERE key LIKE ? AND key NOT LIKE ?", (_KEY + "%", f"%:{today}")
        )
        app.ledger.set(key, reference)
        return True
    if held == reference:
        return True
    log.info(
        "%s: no acknowledgement (external sender already acknowledged today, for %s)",
        reference,
        held,
    )
    return False
