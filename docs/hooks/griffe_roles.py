"""A Griffe extension for the Python API page: the project's docstrings use reST markup (``literal``,
:class:`Name`), which Markdown would print as is. Rewritten to Markdown code spans when loaded."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc):`~?([^`]+)`")
LITERAL = re.compile(r"``(.+?)``")


def markdown_docstring(text: str) -> str:
    return LITERAL.sub(r"`\1`", ROLE.sub(r"`\1`", text))


class ReSTRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
