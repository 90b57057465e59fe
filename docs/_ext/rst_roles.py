"""Griffe extension for the API reference: render the Sphinx-style markup of the docstrings.

The docstrings follow the NumPy convention with reStructuredText roles (``:func:`name```,
``:class:`~minbasis.Basis```) and literal blocks introduced by ``::``. mkdocstrings renders
Markdown, so this extension rewrites, before rendering, each role into inline code of the
object's name (the ``~`` form keeps the last component, as Sphinx does) and each ``::`` that
opens a literal block into ``:``; the indented block itself is already a Markdown code block.
Docstrings in the source are left unchanged. Loaded by ``mkdocs.yml``.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
LITERAL = re.compile(r"(\S)\s*::[ \t]*$", re.M)


def _role(match: re.Match) -> str:
    tilde, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"


class RstRoles(griffe.Extension):
    """Rewrite reST roles and ``::`` literal-block markers in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        doc = obj.docstring
        if doc is not None and doc.value:
            doc.value = LITERAL.sub(r"\1:", ROLE.sub(_role, doc.value))
