"""Every link of the Markdown pages leads somewhere.

The pages are read in three places: as files in a checkout or an unpacked sdist, on a
code host, and as the site ``mkdocs build`` makes of ``docs/``. A link that works in
one of them only is a dead end in the others, so for README.md, ARCHITECTURE.md,
CHANGELOG.md and every page of ``docs/``:

* a relative link (``[text](docs/web.md)``, a ``[label]: path`` definition, an image)
  names a file that exists, and its ``#anchor``, when it points into a Markdown page, is
  one of that page's headings; a page of ``docs/`` links only inside ``docs/`` (the site
  has nothing else), to a file, not a folder;
* a reference (``[text][label]``, ``[label][]``, ``[label]``) has its definition on the
  page; on a page of ``docs/``, ``[text][aiostream.x.Y]`` is an API reference instead,
  resolved by mkdocstrings (``nox -s docs`` checks those);
* no link goes to the documentation site (``site_url`` of mkdocs.yml), which is not
  published: a page links to the page itself, relatively; the one exception is a link
  on a line that says it goes to the *published* site;
* a link to a file of the repository on its code host (``repo_url``/blob/...) names a
  file of the checkout; README.md, ARCHITECTURE.md and CHANGELOG.md link to such files
  relatively instead, so that the link works in a checkout too.

Code blocks, code spans and HTML comments hold no links. External links to other sites
are not fetched.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [
    ROOT / "README.md",
    ROOT / "ARCHITECTURE.md",
    ROOT / "CHANGELOG.md",
    *sorted(path for path in DOCS.rglob("*.md") if "hooks" not in path.parts),
]

# mkdocs.yml holds !!python/name tags, which yaml.safe_load refuses: read the two keys.
_MKDOCS = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
SITE_URL = re.search(r"^site_url:\s*(\S+)", _MKDOCS, re.MULTILINE)[1]  # type: ignore[index]
REPO_URL = re.search(r"^repo_url:\s*(\S+)", _MKDOCS, re.MULTILINE)[1]  # type: ignore[index]
SITE_HOST = re.sub(r"^https?://([^/]+).*$", r"\1", SITE_URL)
REPO_FILE = re.compile(rf"^{re.escape(REPO_URL.rstrip('/'))}/(?:blob|tree)/[^/]+/(?P<path>[^#?]*)")

# docs/hooks/charts.py adds the charts of benchmarks/results/ to the site as
# docs/benchmarks/<name>.png: those files exist on the site, not in docs/.
GENERATED = {
    DOCS / "benchmarks" / chart.name: chart
    for chart in (ROOT / "benchmarks" / "results").glob("*.png")
}

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
# [text](target "title") and ![alt](target), the text holding at most one level of [].
INLINE = re.compile(
    r"!?\[(?P<text>(?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?(?P<target>[^()\s<>]*)>?"
    r"(?:\s+\"[^\"]*\")?\s*\)"
)
DEFINITION = re.compile(r"^ {0,3}\[(?P<label>[^\]]+)\]:[ \t]*<?(?P<target>[^\s>]+)>?", re.M)
AUTOLINK = re.compile(r"<(?P<target>[a-zA-Z][a-zA-Z0-9+.-]*:[^\s<>]+)>")
FULL_REFERENCE = re.compile(r"\[(?P<text>(?:[^\[\]]|\[[^\[\]]*\])*)\]\[(?P<label>[^\[\]]*)\]")
# [label] alone: not an inline link's or a reference's first part, nor a definition.
SHORTCUT = re.compile(r"(?<![\]\\!])\[(?P<label>[^\[\]]+)\](?![\[(:])")
AUTOREF = re.compile(r"^aiostream(\.\w+)*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(?P<title>.*?)[ \t#]*$")
EXPLICIT_ID = re.compile(r"\{[^}]*#(?P<id>[\w-]+)[^}]*\}\s*$")
HTML_ID = re.compile(r"<[a-z]+\b[^>]*\b(?:id|name)=\"(?P<id>[^\"]+)\"")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks, HTML comments and code spans (each line
    kept, so that line numbers still count)."""
    return CODE_SPAN.sub(_blank, without_blocks(text))


def without_blocks(text: str) -> str:
    """``text`` without its fenced code blocks and HTML comments, lines kept."""
    lines: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        found = FENCE.match(line)
        if fence is None and found:
            fence = found[1]
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip(fence[0]):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return COMMENT.sub(_blank, "\n".join(lines))


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match[0])


def normal_label(label: str) -> str:
    return " ".join(label.split()).lower()


def anchors(page: Path) -> set[str]:
    """The ids a link may name in ``page``."""
    return anchors_in(page.read_text(encoding="utf-8"))


def anchors_in(text: str) -> set[str]:
    """The ids a link may name in a page of this text: its headings' (as mkdocs' toc and
    as a code host make them), explicit ``{#id}`` ones, and HTML elements' ``id``."""
    text = without_blocks(text)
    found = {match["id"] for match in HTML_ID.finditer(text)}
    seen: dict[str, int] = {}
    for line in text.splitlines():
        heading = HEADING.match(line)
        if heading is None:
            continue
        title = heading["title"]
        if explicit := EXPLICIT_ID.search(title):
            found.add(explicit["id"])
            continue
        title = INLINE.sub(lambda match: match["text"], title)
        title = html.unescape(re.sub(r"<[^>]+>", "", title)).replace("`", "")
        title = re.sub(r"(\*\*|__|\*|_)(.+?)\1", r"\2", title)
        ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
        toc = re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_title).strip().lower())
        host = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        for slug, suffix in ((toc, "_"), (host, "-")):
            count = seen.get(suffix + slug, 0)
            seen[suffix + slug] = count + 1
            found.add(f"{slug}{suffix}{count}" if count else slug)
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """``(line, target)`` of each inline link, autolink and definition."""
    for pattern in (INLINE, AUTOLINK, DEFINITION):
        for match in pattern.finditer(text):
            yield text.count("\n", 0, match.start()) + 1, match["target"]


def problems(page: Path, text: str | None = None) -> list[str]:
    """What is wrong with the links of ``page`` (whose text is ``text``, default: the
    file's)."""
    if text is None:
        text = page.read_text(encoding="utf-8")
    body = prose(text)
    in_docs = page.is_relative_to(DOCS)
    where = page.relative_to(ROOT).as_posix()
    found: list[str] = []
    for line, shown in enumerate(body.splitlines(), 1):  # a link, or a URL to paste
        if SITE_HOST in shown and not re.search(r"\bpublished\b", shown, re.IGNORECASE):
            found.append(
                f"{where}:{line}: {SITE_HOST}: the documentation site is not published; "
                "link to the page relatively (or say on the line that this is the "
                "published site)"
            )
    defined = {normal_label(match["label"]) for match in DEFINITION.finditer(body)}
    definitions = DEFINITION.sub(lambda match: " " * len(match[0]), body)
    inline_free = INLINE.sub(lambda match: " " * len(match[0]), definitions)

    for line, target in links(body):
        if not target:
            found.append(f"{where}:{line}: an empty link")
            continue
        if SCHEME.match(target):
            found.extend(f"{where}:{line}: {problem}" for problem in absolute(target, page))
            continue
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?")[0])
        if not path_part:
            if anchor and anchor not in anchors_in(text):
                found.append(f"{where}:{line}: {target}: no such heading on the page")
            continue
        if path_part.startswith("/"):
            found.append(f"{where}:{line}: {target}: make it relative to the page")
            continue
        resolved = (page.parent / path_part).resolve()
        exists = resolved.exists() or resolved in GENERATED
        if not exists:
            found.append(f"{where}:{line}: {target}: no such file")
        elif in_docs and not resolved.is_relative_to(DOCS):
            found.append(
                f"{where}:{line}: {target}: outside docs/, so not on the site "
                f"(link to {REPO_URL}/blob/main/... instead)"
            )
        elif in_docs and resolved.is_dir():
            found.append(f"{where}:{line}: {target}: a folder; link to a page in it")
        elif (
            anchor
            and resolved.suffix == ".md"
            and anchor not in anchors(resolved)
            and not (in_docs and AUTOREF.match(anchor))  # an object of a reference page
        ):
            found.append(f"{where}:{line}: {target}: no such heading in {path_part}")

    for match in FULL_REFERENCE.finditer(inline_free):
        label = normal_label(match["label"] or match["text"])
        if label in defined or (in_docs and AUTOREF.match(label)):
            continue
        line = body.count("\n", 0, match.start()) + 1
        found.append(f"{where}:{line}: [{match['label'] or match['text']}]: no definition")
    references_free = FULL_REFERENCE.sub(lambda match: " " * len(match[0]), inline_free)
    for match in SHORTCUT.finditer(references_free):
        label = normal_label(match["label"])
        if label in defined or label.startswith("^") or label in {" ", "x"}:
            continue  # a footnote, a task list's box
        line = body.count("\n", 0, match.start()) + 1
        found.append(f"{where}:{line}: [{match['label']}]: no definition")
    return found


def absolute(target: str, page: Path) -> list[str]:
    """What is wrong with an absolute link (a link to the documentation site is found
    with the other mentions of its host)."""
    if repo_file := REPO_FILE.match(target):
        path = unquote(repo_file["path"]).rstrip("/")
        if not (ROOT / path).exists():
            return [f"{target}: no {path} in the repository"]
        if not page.is_relative_to(DOCS):
            relative = Path(path).as_posix()
            return [f"{target}: link to {relative} relatively, so it works in a checkout"]
    return []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_links_lead_somewhere(page: Path) -> None:
    assert problems(page) == []


def test_the_pages_are_found() -> None:
    assert {ROOT / "README.md", DOCS / "index.md", DOCS / "web.md"} <= set(PAGES)
    assert DOCS / "reference" / "index.md" in PAGES
    assert GENERATED, "the benchmark charts docs/benchmarks.md shows"


@pytest.mark.parametrize(
    ("page", "link", "problem"),
    [
        ("README.md", "[gone](docs/no-such-page.md)", "docs/no-such-page.md: no such file"),
        ("README.md", "[web](docs/web.md#no-such-heading)", "no such heading in docs/web.md"),
        ("README.md", "[here](#no-such-heading)", "no such heading on the page"),
        ("README.md", "[web][no-such-label]", "[no-such-label]: no definition"),
        ("README.md", "see [no-such-label] here", "[no-such-label]: no definition"),
        ("README.md", "[api][aiostream.connection.connect]", "no definition"),
        ("README.md", "[web]: docs/gone.md", "docs/gone.md: no such file"),
        ("README.md", f"[site]({SITE_URL}web/)", "the documentation site is not published"),
        ("README.md", f"**Documentation: <{SITE_URL}>**", "site is not published"),
        ("README.md", f"Read {SITE_URL}web/ first", "site is not published"),
        ("README.md", f"<{REPO_URL}/blob/main/GONE.md>", "no GONE.md in the repository"),
        ("README.md", f"[x]({REPO_URL}/blob/main/LICENSE)", "link to LICENSE relatively"),
        ("README.md", f"[x]({REPO_URL}/blob/main/GONE.md)", "no GONE.md in the repository"),
        ("docs/web.md", "[api](../examples/web/api.py)", "outside docs/"),
        ("docs/web.md", "[ref](reference/)", "a folder"),
        ("docs/web.md", "[gone](no-such-page.md)", "no-such-page.md: no such file"),
        ("docs/web.md", f"[x]({REPO_URL}/tree/main/examples/gone)", "no examples/gone"),
        # and what is fine:
        ("README.md", f"The published site: [docs]({SITE_URL}).", None),
        ("README.md", "[web](docs/web.md#the-example-services)", None),
        ("README.md", "[what](docs/installing.md#the-other-aiostream)", None),
        ("README.md", "[build](#documentation)", None),
        ("README.md", "`[not a link](gone.md)`", None),
        ("docs/web.md", "[api][aiostream.connection.connect]", None),
        ("docs/web.md", f"[api]({REPO_URL}/tree/main/examples/web)", None),
        ("docs/benchmarks.md", "![chart](benchmarks/peer.png)", None),
        ("docs/web.md", "[fanout](fanout.md#workers)", None),
    ],
)
def test_the_check_finds_dead_links(page: str, link: str, problem: str | None) -> None:
    path = ROOT / page
    text = path.read_text(encoding="utf-8") + f"\n\n{link}\n"
    found = problems(path, text)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0], found
