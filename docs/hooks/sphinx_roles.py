"""MkDocs hook: show the docstrings' Sphinx roles (:class:`~a.b.C`) as plain code (``C``).

The docstrings in src/ use Sphinx cross-reference roles; mkdocstrings would print the role
name before the code. This drops the role and, as Sphinx does for ``~``, the module path.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):\s*<code>(~?)([^<]*)</code>")


def _plain(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return ROLE.sub(_plain, html)
