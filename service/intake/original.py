"""Where the DSP finds the original message, as the alert's and the register's "Original".

After intake the message is no longer where it arrived: the local folder backend moves the
file to ``processed/`` (named ``<item id>--<its own name>``), Graph and IMAP move it to the
``processed_folder``. So the text names that place, in a form a person can open: the
file's path (the part of the name the file came with is left as ``*``: a file name can carry a
learner's name, and a summary alert holds no learner detail), or the Outlook link and the
mailbox folder it is in.
"""

from __future__ import annotations

from connectors.base import InboundItem
from service.config import Config


def original_link(config: Config, item: InboundItem) -> str:
    mailbox = config.intake.mailbox
    if mailbox is None:
        return item.web_link or f"mailbox item {item.item_id}"
    if mailbox.backend == "folder":
        where = mailbox.path / "processed" / f"{item.item_id}--*.eml"
        return f"{where} (the intake folder's processed copy of the file)"
    if mailbox.backend == "graph":
        place = f"in the mailbox {mailbox.address}, folder {mailbox.processed_folder}"
        return f"{item.web_link} ({place})" if item.web_link else f"the message {place}"
    if mailbox.backend == "imap":
        place = f"{mailbox.username} (IMAP), folder {mailbox.processed_folder}"
        return item.web_link or f"{place}, item {item.item_id}"
    return item.web_link or f"the mailbox item {item.item_id}"
