"""Render e-mails from ``templates/``: every message has an HTML and a plain-text part.

Templates come in pairs (``name.html.j2`` and ``name.txt.j2``); HTML is autoescaped and a
missing variable is an error, never an empty string.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from service.config import GraphWorkbookConfig, WorkbookConfig, XlsxWorkbookConfig


@cache
def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("templates", "."),
        autoescape=autoescape,  # noqa: S701 - the text part is plain text, never HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["datetime"] = lambda d, fmt="%d %b %Y %H:%M": d.strftime(fmt) if d else ""
    env.filters["date"] = lambda d, fmt="%a %d %b %Y": d.strftime(fmt) if d else ""
    if autoescape:
        env.filters["lines"] = _lines
    return env


def _lines(text: object) -> Markup:
    """Escaped text with its line breaks kept as <br>: Outlook's Word renderer ignores
    ``white-space: pre-wrap``, so a multi-line account or indicators cell ran into one line."""
    return Markup("<br>\n").join(escape(line) for line in str(text or "").splitlines())


def workbook_where(section: WorkbookConfig | None) -> str:
    """Where a workbook is, in words, for mail that has no link to it (``register.link``,
    ``compliance.workbook_link`` unset): "open the register" alone leaves a reader hunting."""
    if isinstance(section, XlsxWorkbookConfig):
        return str(section.path)
    if isinstance(section, GraphWorkbookConfig):
        site = f"https://{section.site_host}{section.site_path}"
        return f"{section.path.lstrip('/')} on the SharePoint site {site}"
    return ""


def render_email(name: str, **context: Any) -> tuple[str, str]:
    """Return ``(html, text)`` for the template pair ``name``."""
    html = _environment(True).get_template(f"{name}.html.j2").render(**context)
    text = _environment(False).get_template(f"{name}.txt.j2").render(**context)
    return html, text
