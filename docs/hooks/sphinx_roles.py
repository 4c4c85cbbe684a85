"""Griffe extension: render aiostream's reStructuredText-flavoured docstrings as Markdown.

The package's docstrings are written for ``help()`` as much as for this site: Google
style sections, with Sphinx roles (``:class:`~aiostream.tasks.ArqDispatcher```), literal
blocks introduced by ``::`` and, in two modules, simple tables. Markdown has none of
these, so before mkdocstrings renders a docstring this extension turns

* each role into an optional mkdocs-autorefs reference: a link where the target is
  documented on the site, plain code where it is not (a private module, the standard
  library), the name resolved in the scope of the object whose docstring holds it, as
  Sphinx does with the current module and class;
* each ``text::`` literal block into ``text:`` and a fenced code block;
* each simple table (``===`` rules) into a Markdown table;
* ``Class attributes:`` headings into the ``Attributes:`` section griffe knows.

The docstrings themselves are left as they are in the source.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# A role's text: a target (``~`` shortens its title to the last name), or an explicit
# title and the target in angle brackets (``Title <aiostream.x.Y>``).
ROLE = re.compile(
    r":(?:py:)?(class|meth|func|mod|attr|data|exc|obj):`(~?)\.?"
    r"(?:([^`<>]+?)\s*<\.?([^`<>]+)>|([^`<>]+?))`"
)
CALLABLE_ROLES = {"meth", "func"}
CLASS_ATTRIBUTES = re.compile(r"^(\s*)Class attributes[^\n:]*:[ \t]*$", re.MULTILINE)
RULE = re.compile(r"^\s*=+( +=+)+\s*$")
FENCE = "```"


def resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as seen from ``obj``, or None."""
    if target == "aiostream" or target.startswith("aiostream."):
        return target
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            found = scope.resolve(head)
        except (griffe.NameResolutionError, griffe.AliasResolutionError, KeyError):
            scope = scope.parent
            continue
        return f"{found}.{rest}" if rest else found
    return None


def roles(obj: griffe.Object, text: str) -> str:
    """``text`` with every role replaced by an optional cross-reference."""

    def replace(match: re.Match[str]) -> str:
        role, short, given, bracketed, plain = match.groups()
        if bracketed is not None:
            title, target = given, bracketed
        else:
            target = plain
            title = target.rsplit(".", 1)[-1] if short else target
            if role in CALLABLE_ROLES:
                title += "()"
        path = resolve(obj, target)
        if path is None or not path.startswith("aiostream"):
            return f"`{title}`"
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    return ROLE.sub(replace, text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(lines: list[str]) -> list[str]:
    """Turn ``text::`` and the indented block after it into ``text:`` and a fence."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        start = i + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        base = _indent(line)
        if start == len(lines) or _indent(lines[start]) <= base:
            out.append(line)
            i += 1
            continue
        end = start
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
            end += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        block = lines[start:end]
        inner = min(_indent(b) for b in block if b.strip())
        title = line.rstrip()[:-1]  # "Example::" -> "Example:"
        pad = " " * base
        section = title.strip() in ("Example:", "Examples:")
        if section:
            # A Google section: griffe wants its content right under the title, indented.
            title, pad = f"{pad}Examples:", " " * (base + 4)
        if title.strip() != ":":
            out.append(title)
        language = "pycon" if block[0].strip().startswith(">>>") else "python"
        out += [f"{pad}{FENCE}{language}"] if section else ["", f"{pad}{FENCE}{language}"]
        out += [f"{pad}{b[inner:]}" if b.strip() else "" for b in block]
        out += [f"{pad}{FENCE}", ""]
        i = end
    return out


def tables(lines: list[str]) -> list[str]:
    """Turn reStructuredText simple tables (``===`` rules) into Markdown tables."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not RULE.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        rule = lines[i]
        starts = [m.start() for m in re.finditer(r"=+", rule)]
        body: list[str] = []
        i += 1
        while i < len(lines) and not RULE.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing rule (or the one under a header row)
        header: list[str] | None = None
        if i < len(lines) and not RULE.match(lines[i]) and len(body) == 1:
            # The rows follow a header row, down to a last rule.
            header = _cells(body[0], starts)
            body = []
            while i < len(lines) and not RULE.match(lines[i]):
                body.append(lines[i])
                i += 1
            i += 1
        rows: list[list[str]] = []
        for line in body:
            if not line.strip():
                continue
            cells = _cells(line, starts)
            if rows and not cells[0]:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
            else:
                rows.append(cells)
        header = header or ["" for _ in starts]
        pad = " " * _indent(rule)
        out.append(f"{pad}| {' | '.join(header)} |")
        out.append(f"{pad}|{'---|' * len(starts)}")
        out += [f"{pad}| {' | '.join(row)} |" for row in rows]
    return out


def _cells(line: str, starts: list[int]) -> list[str]:
    # A cell may run past its rule (a long name): its column then ends at the next space.
    cuts = list(starts)
    for n in range(1, len(cuts)):
        cut = cuts[n]
        while 0 < cut < len(line) and line[cut - 1] != " " and line[cut] != " ":
            cut += 1
        cuts[n] = max(cut, cuts[n - 1])
    bounds = [*cuts[1:], None]
    return [line[a:b].strip() for a, b in zip(cuts, bounds, strict=True)]


def markdown(obj: griffe.Object, text: str) -> str:
    """The docstring ``text`` of ``obj`` in Markdown (roles outside code only)."""
    text = CLASS_ATTRIBUTES.sub(r"\1Attributes:", text)
    out: list[str] = []
    prose: list[str] = []
    in_code = False
    for line in literal_blocks(tables(text.splitlines())):
        if line.strip().startswith(FENCE):
            if not in_code:  # roles may wrap across lines: rewrite a whole run of prose
                out += roles(obj, "\n".join(prose)).split("\n") if prose else []
                prose = []
            in_code = not in_code
            out.append(line)
        elif in_code:
            out.append(line)
        else:
            prose.append(line)
    out += roles(obj, "\n".join(prose)).split("\n") if prose else []
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Walk the package's objects (not aliases: their targets are walked)."""
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = markdown(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)  # type: ignore[misc]
