"""Write the book's executed pages as notebooks for Colab and Jupyter: three editions.

    python -m mnist_lessons.tools.editions --executed _build/jupyter_execute/book --out editions

reads the notebooks the book build executed (``jupyter-book build`` leaves them, with their
``<page>.glue.json``, under ``_build/jupyter_execute/book``) and writes, one notebook per page:

``editions/reader/``
    every page, as the published book shows it: executed outputs and figures kept, solutions
    folded away (text in a collapsed ``<details>`` block, code in a cell collapsed with
    ``#@title Solution`` and Colab's ``cellView: form``, its output cleared until it is run).
``editions/student/``
    the chapters, with every solution removed: a solution code cell becomes a stub (tagged
    ``exercise-stub``; see :func:`stub_for`), solution text is dropped, the checks stay. Outputs
    from the first exercise on are cleared: they were computed with the solutions in place.
``editions/instructor/``
    every page, with everything kept and the solutions visible under "**Solution.**".

Cells the book shows without their code (tagged ``remove-input`` or ``hide-input``, such as the
run-time statement near each page's top) become Colab form cells in the reader and student
editions: a ``#@title`` first line (see :func:`form_title`) and ``cellView: form``, so Colab shows
the title and the output, not the code. Cells the book removes (``remove-cell``) are dropped from
those two editions, except the set-up cell, which Colab needs and which becomes a form cell too.
The instructor edition keeps every cell as the source has it.

In every edition the book's MyST becomes the Markdown that Colab renders (see
:func:`myst_to_markdown`): admonitions become quoted blocks with a bold title, exercises headings
with their number, cross-references links to the published page, ``{glue:text}`` the value the
book computed (marked as such), glued figures the PNG itself; math stays ``$...$``. A construct
this module does not know is an error naming the notebook and cell, never passed through. The
first code cell's ``pip install ...@main`` is pinned to the commit the book was built from.

Solutions are found by parsing the MyST with myst-parser's own Markdown parser (the same
extensions as ``_config.yml``): code cells tagged ``solution``, everything between sphinx-exercise's
``solution-start`` and ``solution-end`` (backtick or colon fences, with or without options), and
``solution`` directives. A marker left open, closed twice or left unterminated is an error that
names the notebook and the cell.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import nbformat

SITE_URL = "https://mnist-lessons.github.io/mnist-lessons/"
EDITIONS = ("reader", "student", "instructor")
MYST_EXTENSIONS = ("colon_fence", "dollarmath", "amsmath")  # as in _config.yml
BOOK_FOLDER = "book"  # the pages' folder in the book, and so in their published address
EXTRA_PAGES = ("article_errata", "complete_code")  # pages besides the chapters (reader, instructor)

STUB = "# your code here\nraise NotImplementedError"
STUB_TAG = "exercise-stub"
SOLUTION_TAG = "solution"
GLUE_PREFIX = "application/papermill.record/"
GLUE_MARK = "<sup>†</sup>"
GLUE_NOTE = ("<sub>† computed when the book was built; your own run may give slightly "
             "different numbers.</sub>")
SOLUTION_TITLE = "#@title Solution"
HIDDEN_INPUT_TAGS = ("remove-input", "hide-input")  # the book shows the output, not the code
REMOVED_TAG = "remove-cell"
# Titles of form cells by the function a cell calls last, where the cell has no comment to use.
FORM_TITLES = {"show_run_time": "Time to run this page"}
FORM_FALLBACK = "Code the book does not show"

ADMONITIONS = {
    "admonition": None, "note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important",
    "warning": "Warning", "caution": "Caution", "attention": "Attention", "danger": "Danger",
    "error": "Error", "seealso": "See also",
}
SOLUTION_MARKERS = ("solution-start", "solution-end", "solution")
# Options each directive may carry; any other option is an error (it may change the meaning).
OPTIONS = {
    **{name: {"class", "name"} for name in ADMONITIONS},
    "exercise": {"label", "class", "nonumber", "hidden"},
    "exercise-start": {"label", "class", "nonumber", "hidden"},
    "exercise-end": set(),
    "solution": {"label", "class", "hidden"},
    "solution-start": {"label", "class", "hidden"},
    "solution-end": set(),
    "glue:figure": {"alt", "align", "figwidth", "figclass", "name", "class", "width"},
    "glue": set(), "glue:": set(), "glue:any": set(),
    "glue:md": {"format"},
    "glue:math": {"label", "nowrap", "class"},
    "math": {"label", "name", "nowrap", "class"},
    "code": {"linenos", "lineno-start", "emphasize-lines", "caption", "name", "class", "force"},
}
OPTIONS["code-block"] = OPTIONS["sourcecode"] = OPTIONS["code"]

_ROLE_NAME = re.compile(r"\{([a-zA-Z0-9_\-+:]+)\}")  # as mdit_py_plugins.myst_role
_OPTION = re.compile(r"^:([\w-]+):(?:\s+(.*?))?\s*$")
_CLOSING_FENCE = re.compile(r"^[\s>]*(`{3,}|:{3,})\s*$")  # in a quote, after its '>'s
_PIN = re.compile(r"(git\+https://[^\s\"'@]+)@([\w./-]+)")
_VERBATIM = {"fence", "colon_fence", "code_block", "html_block", "math_block", "math_block_label",
             "amsmath"}
_INLINE_OK = {"text", "softbreak", "hardbreak", "code_inline", "em_open", "em_close",
              "strong_open", "strong_close", "link_open", "link_close", "image", "html_inline",
              "math_inline", "myst_role"}


class EditionError(ValueError):
    """The MyST of a page cannot be turned into a notebook; the message names the cell."""


@dataclass(frozen=True)
class Target:
    """Where a cross-reference label points: a page, an anchor on it, and the text to show."""

    page: str
    anchor: str
    text: str


@dataclass
class Page:
    """What converting the Markdown of one page needs to know besides the Markdown.

    Attributes:
        name: the page's name in the book, e.g. ``"book/ch07_pooling"``.
        glued: glue name -> mime bundle (``{"text/plain": ..., "image/png": ...}``).
        titles: page name -> title, for ``{doc}`` links.
        labels: label -> :class:`Target`, for ``{ref}``, ``{numref}`` and ``{eq}``.
        site_url: the published book, which links point to.
        exercises: how many numbered exercises the page has shown so far.
    """

    name: str = f"{BOOK_FOLDER}/page"
    glued: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    titles: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, Target] = field(default_factory=dict)
    site_url: str = SITE_URL
    exercises: int = 0

    def url(self, page: str, anchor: str = "") -> str:
        """The published address of ``page`` (``"book/ch01_..."``), with ``#anchor`` if given."""
        return f"{self.site_url.rstrip('/')}/{page}.html" + (f"#{anchor}" if anchor else "")


@dataclass(frozen=True)
class Directive:
    """A MyST directive: ``{name} argument``, its ``:option: value`` lines, and its body."""

    name: str
    argument: str
    options: Mapping[str, str]
    body: str


@dataclass(frozen=True)
class Part:
    """A piece of a Markdown cell, cut at solution markers.

    ``solution`` says whether it lies inside a solution; ``opens`` whether a solution starts
    with it (so an edition can title it).
    """

    text: str
    solution: bool
    opens: bool = False


# ---------------------------------------------------------------------------------------------
# Parsing MyST


@lru_cache(maxsize=1)
def _parser():
    """myst-parser's Markdown parser with the book's MyST extensions."""
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    return create_md_parser(MdParserConfig(enable_extensions=set(MYST_EXTENSIONS)), RendererHTML)


def _tokens(text: str) -> list:
    return _parser().parse(text)


def _is_directive(token) -> bool:
    return token.type in ("fence", "colon_fence") and token.info.strip().startswith("{")


def _block_lines(token, lines: list[str]) -> tuple[int, int]:
    """The source lines ``[start, end)`` a block token spans."""
    start, end = token.map
    if token.type == "amsmath":  # its map ends one line early
        end = start + token.content.rstrip("\n").count("\n") + 1
    return start, min(end, len(lines))


def _check_closed(token, lines: list[str], where: str) -> None:
    """An unterminated fence swallows the rest of the cell: make it an error."""
    start, end = _block_lines(token, lines)
    closing = _CLOSING_FENCE.match(lines[end - 1]) if end - start >= 2 else None
    if not closing or closing.group(1)[0] != token.markup[0] or len(closing.group(1)) < len(token.markup):
        raise EditionError(f"{where}: the fence {lines[start].strip()!r} (line {start + 1}) is never "
                           f"closed; it would swallow the rest of the cell")


def parse_directive(token, where: str) -> Directive:
    """Name, argument, options and body of a directive fence (``` or :::).

    Options are the ``:name: value`` lines at the top of the body, or a YAML block between
    ``---`` lines, as MyST allows.
    """
    head = token.info.strip()
    close = head.find("}")
    name, argument = head[1:close].strip(), head[close + 1:].strip()
    body_lines = token.content.splitlines()
    options: dict[str, str] = {}
    if body_lines and body_lines[0].strip() == "---":
        import yaml

        end = next((i for i in range(1, len(body_lines)) if body_lines[i].strip() == "---"), None)
        if end is None:
            raise EditionError(f"{where}: the options of {{{name}}} open with '---' and never close")
        loaded = yaml.safe_load("\n".join(body_lines[1:end])) or {}
        options = {str(k): "" if v is None else str(v) for k, v in loaded.items()}
        body_lines = body_lines[end + 1:]
    else:
        while body_lines and (match := _OPTION.match(body_lines[0])):
            options[match.group(1)] = match.group(2) or ""
            body_lines = body_lines[1:]
    if name in OPTIONS:
        unknown = set(options) - OPTIONS[name]
        if unknown:
            raise EditionError(f"{where}: {{{name}}} has options this tool does not know: "
                               f"{', '.join(sorted(unknown))}")
    return Directive(name, argument, options, "\n".join(body_lines).strip("\n"))


def split_solutions(text: str, open_at: str | None, where: str) -> tuple[list[Part], str | None]:
    """Cut a Markdown cell at its solution markers.

    Args:
        text: the cell's MyST source.
        open_at: where the solution that is open when the cell begins started (``None``: none is).
        where: the cell, for error messages.

    Returns:
        the parts of the cell in order, and where the solution still open at its end started.

    Raises:
        EditionError: a ``solution-start`` inside an open solution, a ``solution-end`` without
            one, a marker inside a list, quote or other directive, or an unterminated fence.
    """
    lines = text.split("\n")
    parts: list[Part] = []
    pos, opens = 0, False
    for token in _tokens(text):
        if not _is_directive(token):
            continue
        _check_closed(token, lines, where)
        directive = parse_directive(token, where)
        if directive.name not in SOLUTION_MARKERS:
            continue
        if token.level != 0:
            raise EditionError(f"{where}: {{{directive.name}}} inside a list or quote")
        start, end = _block_lines(token, lines)
        if directive.name != "solution" and directive.body.strip():
            raise EditionError(f"{where}: {{{directive.name}}} (line {start + 1}) has content; is its "
                               f"closing fence missing? ({directive.body.strip().splitlines()[0]!r} "
                               f"would be swallowed)")
        before = "\n".join(lines[pos:start])
        if before.strip() or opens:
            parts.append(Part(before, open_at is not None, opens))
        opens = False
        if directive.name == "solution-start":
            if open_at is not None:
                raise EditionError(f"{where}: solution-start while the solution opened in "
                                   f"{open_at} is still open (a solution-end is missing)")
            if not directive.argument:
                raise EditionError(f"{where}: solution-start names no exercise label")
            open_at, opens = where, True
        elif directive.name == "solution-end":
            if open_at is None:
                raise EditionError(f"{where}: solution-end without a solution-start before it")
            open_at = None
        else:  # a self-contained {solution} directive
            if open_at is not None:
                raise EditionError(f"{where}: a solution directive inside the solution opened in "
                                   f"{open_at}")
            parts.append(Part(directive.body, True, True))
        pos = end
    rest = "\n".join(lines[pos:])
    if rest.strip() or opens:
        parts.append(Part(rest, open_at is not None, opens))
    return parts, open_at


# ---------------------------------------------------------------------------------------------
# MyST -> Markdown


def escape_markdown(text: str) -> str:
    """``text`` as Markdown that renders as exactly this text (no emphasis, links, math...)."""
    return re.sub(r"([\\`*_\[\]<>|$&#~])", r"\\\1", text)


def format_plain_text(text: str, fmt: str) -> str:
    """A glued ``text/plain`` value as ``{glue:text}`` shows it (myst-nb's rules).

    The quotes of a string's repr go; ``fmt`` is a format spec ending in its type character.
    """
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt == "":
        return str(value)
    kind = fmt[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, fmt)


def _glued(page: Page, key: str, where: str) -> Mapping[str, Any]:
    if "::" in key:
        raise EditionError(f"{where}: glue from another page ({key!r}) is not supported")
    if key not in page.glued:
        raise EditionError(f"{where}: no value was glued under {key!r} (was the notebook executed?)")
    return page.glued[key]


def _png(bundle: Mapping[str, Any], alt: str, key: str, where: str) -> str:
    if "image/png" not in bundle:
        raise EditionError(f"{where}: the value glued under {key!r} is not a PNG figure")
    data = "".join(str(bundle["image/png"]).split())
    return f"![{escape_markdown(alt)}](data:image/png;base64,{data})"


def _glue_any(bundle: Mapping[str, Any], key: str, where: str) -> str:
    """A glued value shown as the notebook would: figure, Markdown, or its text."""
    if "image/png" in bundle:
        return _png(bundle, key, key, where)
    if "text/markdown" in bundle:
        return str(bundle["text/markdown"]).strip() + GLUE_MARK
    if "text/plain" in bundle:
        return escape_markdown(format_plain_text(str(bundle["text/plain"]), "")) + GLUE_MARK
    raise EditionError(f"{where}: the value glued under {key!r} has nothing a notebook can show")


def _title_and_target(content: str) -> tuple[str | None, str]:
    """``Title <target>`` or ``target``, as MyST's cross-reference roles take them."""
    match = re.fullmatch(r"\s*(.*?)\s*<([^<>]+)>\s*", content, re.S)
    if match and match.group(1):
        return match.group(1), match.group(2).strip()
    return None, content.strip()


def _role(name: str, content: str, page: Page, where: str) -> str:
    """The Markdown for one MyST role."""
    if name == "glue:text":
        if "::" in content:
            raise EditionError(f"{where}: glue from another page ({content!r}) is not supported")
        key, _, fmt = content.rpartition(":") if ":" in content else (content, "", "s")
        bundle = _glued(page, key.strip(), where)
        if "text/plain" not in bundle:
            raise EditionError(f"{where}: the value glued under {key!r} has no text/plain")
        try:
            text = format_plain_text(str(bundle["text/plain"]), fmt or "s")
        except (ValueError, TypeError) as exc:
            raise EditionError(f"{where}: cannot format {key!r} with {fmt!r}: {exc}") from None
        return escape_markdown(text) + GLUE_MARK
    if name in ("glue", "glue:", "glue:any"):
        return _glue_any(_glued(page, content.strip(), where), content.strip(), where)
    if name == "glue:md":
        key = content.rsplit(":", 1)[0] if content.count(":") == 1 else content
        bundle = _glued(page, key.strip(), where)
        if "text/markdown" not in bundle:
            raise EditionError(f"{where}: the value glued under {key!r} has no text/markdown")
        return str(bundle["text/markdown"]).strip() + GLUE_MARK
    if name == "doc":
        title, target = _title_and_target(content)
        if target.startswith("/"):
            doc = target.lstrip("/")
        else:
            doc = posixpath.normpath(posixpath.join(posixpath.dirname(page.name), target))
        doc = re.sub(r"\.(md|ipynb)$", "", doc)
        if title is None:
            if doc not in page.titles:
                raise EditionError(f"{where}: {{doc}} points to {target!r}, which is not a page "
                                   f"of the book")
            title = page.titles[doc]
        return f"[{escape_markdown(title)}]({page.url(doc)})"
    if name in ("ref", "numref", "eq"):
        title, label = _title_and_target(content)
        target = page.labels.get(label)
        if target is None:
            raise EditionError(f"{where}: {{{name}}} points to {label!r}, which no page defines")
        text = title if title is not None else target.text
        text = text.replace("{number}", "").replace("%s", "").strip() or target.text
        return f"[{escape_markdown(text)}]({page.url(target.page, target.anchor)})"
    if name == "math":
        return f"${content}$"
    if name in ("sub", "sup"):
        return f"<{name}>{escape_markdown(content)}</{name}>"
    if name == "abbr":
        short, _, long = content.partition("(")
        return f'<abbr title="{long.rstrip(")").strip()}">{escape_markdown(short.strip())}</abbr>'
    raise EditionError(f"{where}: the role {{{name}}} is not supported (content {content!r})")


def _scan_roles(src: str) -> list[tuple[int, int, str, str]]:
    """Every role in ``src`` as ``(start, end, name, content)``, skipping code spans and escapes.

    Mirrors markdown-it's inline rules (the myst_role rule runs before code spans); the caller
    checks the result against the parser's own tokens.
    """
    found, i = [], 0
    while i < len(src):
        char = src[i]
        if char == "\\":
            i += 2
            continue
        if char == "{" and (match := _ROLE_NAME.match(src, i)):
            ticks = len(src[match.end():]) - len(src[match.end():].lstrip("`"))
            close = src.find("`" * ticks, match.end() + ticks + 1) if ticks else -1
            if close != -1:
                content = src[match.end() + ticks:close].replace("\n", " ")
                found.append((i, close + ticks, match.group(1), content))
                i = close + ticks
                continue
        if char == "`":
            ticks = len(src[i:]) - len(src[i:].lstrip("`"))
            run = re.compile(r"(?<!`)" + "`" * ticks + r"(?!`)")
            close = run.search(src, i + ticks)
            i = close.end() if close else i + ticks
            continue
        i += 1
    return found


def _parsed_roles(tokens) -> list[tuple[str, str]]:
    """``(name, content)`` of every role the parser found in these block tokens."""
    roles = []
    for token in tokens:
        for child in token.children or []:
            if child.type not in _INLINE_OK:
                raise EditionError(f"unsupported Markdown construct {child.type!r}")
            if child.type == "myst_role":
                roles.append((child.meta["name"], child.content))
            if child.type in ("link_open", "image"):
                address = str(child.attrGet("href") or child.attrGet("src") or "")
                if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", address):
                    raise EditionError(f"the relative address {address!r} would not resolve in a "
                                       f"notebook; use {{doc}} or a full URL")
    return roles


def _inline_block(lines: list[str], verbatim: set[int], tokens, page: Page, where: str) -> list[str]:
    """A block without directives (paragraph, heading, list, quote, table) with its roles
    replaced; lines of code or math blocks inside it stay as they are."""
    out, run, found = [], [], []

    def flush() -> None:
        src = "\n".join(run)
        roles = _scan_roles(src)
        found.extend((name, content) for _, _, name, content in roles)
        for start, end, name, content in reversed(roles):
            src = src[:start] + _role(name, content, page, where) + src[end:]
        if run:
            out.extend(src.split("\n"))
        run.clear()

    for number, line in enumerate(lines):
        if number in verbatim:
            flush()
            out.append(line)
        else:
            run.append(line)
    flush()
    try:
        parsed = _parsed_roles(tokens)
    except EditionError as exc:
        raise EditionError(f"{where}: {exc}") from None
    if parsed != found:
        raise EditionError(f"{where}: cannot locate the roles {parsed} in the source "
                           f"(found {found}); rewrite the sentence around them")
    return out


def _quote(markdown: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in markdown.split("\n"))


def _directive(d: Directive, page: Page, where: str) -> str:
    """The Markdown for one directive (other than the solution markers)."""
    inner = f"{where}, {{{d.name}}}"
    if d.name in ADMONITIONS:
        if d.name == "admonition":
            if not d.argument:
                raise EditionError(f"{where}: an admonition needs a title")
            title, body = convert_markdown(d.argument, page, inner), d.body
        else:
            title, body = ADMONITIONS[d.name], "\n".join(x for x in (d.argument, d.body) if x)
        body_md = convert_markdown(body, page, inner)
        if "dropdown" in d.options.get("class", "").split():
            return f"<details>\n<summary><b>{title}</b></summary>\n\n{body_md}\n\n</details>"
        return _quote(f"**{title}**" + (f"\n\n{body_md}" if body_md else ""))
    if d.name in ("exercise", "exercise-start"):
        subtitle = convert_markdown(d.argument, page, inner) if d.argument else ""
        if "nonumber" in d.options:
            heading = f"Exercise {subtitle}".strip()
        else:
            page.exercises += 1
            heading = f"Exercise {page.exercises}" + (f" ({subtitle})" if subtitle else "")
        body_md = convert_markdown(d.body, page, inner) if d.name == "exercise" else ""
        return f"### {heading}" + (f"\n\n{body_md}" if body_md else "")
    if d.name == "exercise-end":
        return ""
    if d.name == "glue:figure":
        key = d.argument.strip()
        image = _png(_glued(page, key, where), d.options.get("alt", key), key, where)
        caption = convert_markdown(d.body, page, inner)
        return image + (f"\n\n{caption}" if caption else "")
    if d.name in ("glue", "glue:", "glue:any"):
        return _glue_any(_glued(page, d.argument.strip(), where), d.argument.strip(), where)
    if d.name == "glue:md":
        bundle = _glued(page, d.argument.strip(), where)
        if "text/markdown" not in bundle:
            raise EditionError(f"{where}: {d.argument!r} has no text/markdown")
        return str(bundle["text/markdown"]).strip() + GLUE_MARK
    if d.name == "glue:math":
        bundle = _glued(page, d.argument.strip(), where)
        if "text/latex" not in bundle:
            raise EditionError(f"{where}: {d.argument!r} has no text/latex")
        return "$$\n" + str(bundle["text/latex"]).strip().strip("$").strip() + "\n$$"
    if d.name == "math":
        return "$$\n" + d.body.strip() + "\n$$"
    if d.name in ("code", "code-block", "sourcecode"):
        return f"```{d.argument}\n{d.body}\n```"
    if d.name in SOLUTION_MARKERS:
        raise EditionError(f"{where}: {{{d.name}}} inside another directive or a list")
    raise EditionError(f"{where}: the directive {{{d.name}}} is not supported")


def _math_block(token) -> str:
    return "$$\n" + token.content.strip("\n") + "\n$$"


def convert_markdown(text: str, page: Page, where: str) -> str:
    """MyST -> Markdown (the heart of :func:`myst_to_markdown`, without the glue note)."""
    lines = text.split("\n")
    tokens = _tokens(text)
    out: list[str] = []
    pos = 0
    blocks = [i for i, t in enumerate(tokens) if t.level == 0 and t.map is not None]
    for n, index in enumerate(blocks):
        token = tokens[index]
        start, end = _block_lines(token, lines)
        start = max(start, pos)
        out.extend(lines[pos:start])
        if _is_directive(token):
            _check_closed(token, lines, where)
            out.extend(_directive(parse_directive(token, where), page, where).split("\n"))
        elif token.type == "colon_fence":  # ::: without a directive: a plain code block
            _check_closed(token, lines, where)
            out.extend([f"```{token.info.strip()}", *token.content.rstrip("\n").split("\n"), "```"])
        elif token.type == "fence":
            _check_closed(token, lines, where)
            out.extend(lines[start:end])
        elif token.type in ("code_block", "html_block", "hr"):
            out.extend(lines[start:end])
        elif token.type in ("math_block", "math_block_label", "amsmath"):
            out.extend(_math_block(token).split("\n"))
        elif token.type in ("myst_target", "myst_line_comment", "myst_block_break", "front_matter"):
            pass  # targets, comments and page breaks show nothing
        elif token.type in ("paragraph_open", "heading_open", "bullet_list_open",
                            "ordered_list_open", "blockquote_open", "table_open"):
            stop = blocks[n + 1] if n + 1 < len(blocks) else len(tokens)
            inner = tokens[index:stop]
            verbatim: set[int] = set()
            for t in inner:
                if t.type not in _INLINE_BLOCK_TYPES and t.type not in _VERBATIM:
                    raise EditionError(f"{where}: unsupported Markdown construct {t.type!r}")
                if t.type in _VERBATIM and t.map:
                    if t.type == "colon_fence":
                        raise EditionError(f"{where}: a ::: fence ({t.info.split()[0] if t.info else 'code'}) "
                                           f"inside a list or quote is not supported")
                    if _is_directive(t):
                        raise EditionError(f"{where}: the directive {t.info.split()[0]} inside a "
                                           f"list or quote is not supported")
                    if t.type in ("fence", "colon_fence"):
                        _check_closed(t, lines, where)
                    a, b = _block_lines(t, lines)
                    verbatim.update(range(a - start, b - start))
            out.extend(_inline_block(lines[start:end], verbatim, inner, page, where))
        else:
            raise EditionError(f"{where}: unsupported Markdown construct {token.type!r}")
        pos = max(pos, end)
    out.extend(lines[pos:])
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


_INLINE_BLOCK_TYPES = {
    "paragraph_open", "paragraph_close", "heading_open", "heading_close", "inline",
    "bullet_list_open", "bullet_list_close", "ordered_list_open", "ordered_list_close",
    "list_item_open", "list_item_close", "blockquote_open", "blockquote_close", "hr",
    "table_open", "table_close", "thead_open", "thead_close", "tbody_open", "tbody_close",
    "tr_open", "tr_close", "th_open", "th_close", "td_open", "td_close",
}


def with_glue_note(markdown: str) -> str:
    """``markdown`` with the note that explains the mark on glued values, if it has any: after
    the paragraph (or quote, table, list) of the last marked value."""
    lines = markdown.split("\n")
    marked = [i for i, line in enumerate(lines) if GLUE_MARK in line]
    if not marked:
        return markdown
    end = next((i for i in range(marked[-1] + 1, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[:end] + ["", GLUE_NOTE] + lines[end:])  # lines[end], if any, is blank


def myst_to_markdown(text: str, glued: Mapping[str, Mapping[str, Any]] | None = None, *,
                     page: Page | None = None, where: str = "a Markdown cell") -> str:
    """One Markdown cell of the book, as Markdown that Colab and Jupyter render.

    Args:
        text: the cell's MyST (without solution markers: see :func:`split_solutions`).
        glued: glue name -> mime bundle; overrides ``page.glued``.
        page: the page the cell belongs to (its name, titles and labels for links, the site).
        where: the cell, for error messages.

    Returns:
        CommonMark with inline HTML: admonitions as quoted blocks with a bold title, exercises
        as headings, cross-references as links to the published book, glued values with a
        mark and a note saying they were computed when the book was built, glued figures as
        PNG data URIs; math stays ``$...$``.

    Raises:
        EditionError: a directive or role this module does not know, a missing glue value, an
            unknown link target or an unterminated fence.
    """
    page = page if page is not None else Page()
    if glued is not None:
        page = Page(page.name, glued, page.titles, page.labels, page.site_url, page.exercises)
    return with_glue_note(convert_markdown(text, page, where))


# ---------------------------------------------------------------------------------------------
# Pages: titles, labels, glue


def page_title(texts: Iterable[str]) -> str | None:
    """The first level-1 heading of a page given the MyST of its Markdown cells."""
    for text in texts:
        tokens = _tokens(text)
        for i, token in enumerate(tokens):
            if token.type == "heading_open" and token.tag == "h1":
                return tokens[i + 1].content.strip()
    return None


def page_labels(name: str, texts: Iterable[str]) -> dict[str, Target]:
    """Labels a page defines: ``(label)=`` targets, exercise labels, equation labels."""
    labels: dict[str, Target] = {}
    for text in texts:
        tokens = _tokens(text)
        for i, token in enumerate(tokens):
            if token.type == "myst_target":
                heading = next((tokens[j + 1].content for j in range(i + 1, len(tokens))
                                if tokens[j].type == "heading_open"), token.content)
                labels[token.content] = Target(name, token.content, heading)
            elif token.type == "math_block_label":
                labels[token.info] = Target(name, f"equation-{token.info}", f"({token.info})")
            elif _is_directive(token):
                try:
                    d = parse_directive(token, name)
                except EditionError:
                    continue
                if d.name in ("exercise", "exercise-start") and "label" in d.options:
                    label = d.options["label"]
                    labels[label] = Target(name, label, f"Exercise {d.argument}".strip())
                elif d.name in ("math", "glue:math") and "label" in d.options:
                    label = d.options["label"]
                    labels[label] = Target(name, f"equation-{label}", f"({label})")
    return labels


def _page_texts(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return [c.source for c in nb.cells if c.cell_type == "markdown"]
    return [path.read_text(encoding="utf-8")]


def book_index(folders: Iterable[Path]) -> tuple[dict[str, str], dict[str, Target]]:
    """Titles and labels of every page (``.ipynb`` and ``.md``) in these folders of the book."""
    titles: dict[str, str] = {}
    labels: dict[str, Target] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*")):
            if path.suffix not in (".ipynb", ".md") or path.name.startswith("."):
                continue
            name = f"{BOOK_FOLDER}/{path.stem}"
            texts = _page_texts(path)
            title = page_title(texts)
            if title and name not in titles:
                titles[name] = title
            for label, target in page_labels(name, texts).items():
                labels.setdefault(label, target)
    return titles, labels


def glued_values(nb: nbformat.NotebookNode, glue_json: Path | None = None) -> dict[str, dict]:
    """Glue name -> mime bundle, from an executed notebook and the build's ``<page>.glue.json``.

    myst-nb moves hidden glue outputs out of the notebook into ``<page>.glue.json``; outputs
    still in the notebook (a ``scrapbook`` key in their metadata) count too.
    """
    values: dict[str, dict] = {}
    if glue_json is not None and Path(glue_json).exists():
        for key, output in json.loads(Path(glue_json).read_text(encoding="utf-8")).items():
            values[key] = _unprefixed(output)
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            meta = output.get("metadata", {}).get("scrapbook")
            if meta:
                values[meta["name"]] = _unprefixed(output)
    return values


def _unprefixed(output: Mapping[str, Any]) -> dict:
    prefix = output.get("metadata", {}).get("scrapbook", {}).get("mime_prefix", "")
    return {k[len(prefix):] if prefix and k.startswith(prefix) else k: v
            for k, v in output.get("data", {}).items()}


# ---------------------------------------------------------------------------------------------
# Notebooks


def stub_for(source: str) -> str:
    """The student's starting point for a solution cell.

    Each top-level function keeps its signature (and docstring) with the body replaced by the
    stub; a cell without functions becomes the two stub lines.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return STUB
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if not functions:
        return STUB
    parts = []
    for fn in functions:
        lines = [f"def {fn.name}({ast.unparse(fn.args)}):"]
        doc = ast.get_docstring(fn)
        if doc:
            lines.append(f'    """{doc}"""')
        lines += ["    # your code here", "    raise NotImplementedError"]
        parts.append("\n".join(lines))
    return "\n\n\n".join(parts)


def pin_setup(source: str, commit: str, where: str) -> str:
    """The set-up cell with its ``git+https://...@<ref>`` install pinned to ``commit``."""
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        raise EditionError(f"{commit!r} is not a commit hash")
    pinned, count = _PIN.subn(lambda m: f"{m.group(1)}@{commit}", source)
    if count != 1:
        raise EditionError(f"{where}: the first code cell should install the package from git "
                           f"once (found {count} git+https installs)")
    return pinned


def form_title(source: str) -> str:
    """A title for a form cell: its first line if that is a comment (``# Colab set-up: ...``),
    else the title :data:`FORM_TITLES` gives the last function it calls, else
    :data:`FORM_FALLBACK`."""
    first = source.lstrip("\n").split("\n", 1)[0].strip()
    if first.startswith("#") and not first.startswith("#@") and first.lstrip("# ").strip():
        return first.lstrip("# ").strip()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return FORM_FALLBACK
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    names = [c.id if isinstance(c, ast.Name) else c.attr for c in calls
             if isinstance(c, (ast.Name, ast.Attribute))]
    for name in reversed(names):
        if name in FORM_TITLES:
            return FORM_TITLES[name]
    return FORM_FALLBACK


def as_form(cell: nbformat.NotebookNode) -> None:
    """Make a code cell a Colab form cell (in place): ``#@title`` line and ``cellView: form``.
    Colab then shows the title and the cell's output, and the code only on request."""
    title = form_title(cell.source).replace("\n", " ")
    cell.source = f"#@title {title}\n{cell.source}"
    cell.metadata["cellView"] = "form"


def _shown_outputs(cell: nbformat.NotebookNode) -> list:
    """The outputs a reader of the book sees: no hidden glue records, no stderr (the book
    removes it), none for cells tagged ``remove-output``."""
    if "remove-output" in cell.metadata.get("tags", []):
        return []
    kept = []
    for output in cell.get("outputs", []):
        if output.get("metadata", {}).get("scrapbook", {}).get("mime_prefix"):
            continue
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            continue
        kept.append(output)
    return kept


def _has_exercise(text: str) -> bool:
    return any(_is_directive(t) and re.match(r"\{(exercise|exercise-start)\}", t.info.strip())
               for t in _tokens(text))


def _markdown_cell(parts: list[Part], edition: str, page: Page, where: str) -> str:
    chunks = []
    for part in parts:
        markdown = convert_markdown(part.text, page, where)
        if not part.solution:
            chunks.append(markdown)
        elif edition == "reader" and markdown.strip():
            chunks.append(f"<details>\n<summary><b>Solution</b></summary>\n\n{markdown}\n\n</details>")
        elif edition == "instructor":
            chunks.extend(["**Solution.**"] * part.opens + [markdown])
    return with_glue_note("\n\n".join(c for c in chunks if c.strip()))


def make_edition(nb: nbformat.NotebookNode, edition: str, page: Page, *, commit: str,
                 notebook: str = "notebook") -> nbformat.NotebookNode:
    """One page of the book as a notebook of the given edition.

    Args:
        nb: the executed notebook (its outputs are kept where the edition keeps outputs).
        edition: ``"reader"``, ``"student"`` or ``"instructor"`` (see the module's docstring).
        page: the page's name, glue values, titles and labels.
        commit: the commit the set-up cell installs the package from.
        notebook: the notebook's name, for error messages.

    Raises:
        EditionError: see :func:`split_solutions` and :func:`myst_to_markdown`; also a solution
            still open at the end of the notebook.
    """
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    page = Page(page.name, page.glued, page.titles, page.labels, page.site_url)
    open_at: str | None = None
    exercises_begun = False
    setup_done = False
    for index, cell in enumerate(nb.cells):
        where = f"{notebook}, cell {index}"
        new = copy.deepcopy(cell)
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "markdown":
            parts, open_at = split_solutions(cell.source, open_at, where)
            exercises_begun = exercises_begun or _has_exercise(cell.source)
            new.source = _markdown_cell(parts, edition, page, where)
            if not new.source.strip():
                continue
        elif cell.cell_type == "code":
            setup = not setup_done
            if setup:
                new.source = pin_setup(cell.source, commit, where)
                setup_done = True
            elif REMOVED_TAG in tags and edition != "instructor":
                continue
            solution = open_at is not None or SOLUTION_TAG in tags
            new.outputs = _shown_outputs(cell)
            if solution and edition == "reader":
                new.source = f"{SOLUTION_TITLE}\n{new.source}"
                new.metadata["cellView"] = "form"
                new.outputs, new.execution_count = [], None
            elif solution and edition == "student":
                new.source = stub_for(cell.source)
                new.metadata["tags"] = [t for t in tags if t != SOLUTION_TAG] + [STUB_TAG]
                new.outputs, new.execution_count = [], None
            elif edition == "student" and exercises_begun:
                new.outputs, new.execution_count = [], None
            if (not solution and edition != "instructor"
                    and (setup or any(tag in tags for tag in HIDDEN_INPUT_TAGS))):
                as_form(new)
        out.cells.append(new)
    if open_at is not None:
        raise EditionError(f"{notebook}: the solution opened in {open_at} is never closed "
                           f"(solution-end missing)")
    if not setup_done:
        raise EditionError(f"{notebook}: no code cell to install the package")
    return out


def pages_in(executed: Path, edition: str) -> list[Path]:
    """The executed notebooks an edition is made from: the chapters, and for the reader and
    instructor editions also the other pages in :data:`EXTRA_PAGES`."""
    chapters = sorted(Path(executed).glob("ch*.ipynb"))
    if not chapters:
        raise FileNotFoundError(f"no executed chapters (ch*.ipynb) in {executed}: build the book "
                                f"first (make book)")
    if edition == "student":
        return chapters
    extras = [Path(executed) / f"{name}.ipynb" for name in EXTRA_PAGES]
    missing = [p.name for p in extras if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{executed} lacks {', '.join(missing)}")
    return chapters + extras


def write_editions(executed: Path, out_dir: Path, *, commit: str, site_url: str = SITE_URL,
                   book: Path | None = None) -> dict[str, list[Path]]:
    """Write the three editions of the executed pages; return the written paths by edition.

    ``book`` is the book's source folder, read for the titles of pages that are not notebooks
    (``intro.md``) when a link points to them.
    """
    executed = Path(executed)
    titles, labels = book_index([executed] + ([Path(book)] if book else []))
    written: dict[str, list[Path]] = {}
    for edition in EDITIONS:
        folder = Path(out_dir) / edition
        folder.mkdir(parents=True, exist_ok=True)
        written[edition] = []
        for path in pages_in(executed, edition):
            nb = nbformat.read(path, as_version=4)
            page = Page(f"{BOOK_FOLDER}/{path.stem}", glued_values(nb, path.with_suffix(".glue.json")),
                        titles, labels, site_url)
            result = make_edition(nb, edition, page, commit=commit, notebook=path.name)
            nbformat.validate(result)
            target = folder / path.name
            nbformat.write(result, target)
            written[edition].append(target)
    return written


def head_commit() -> str:
    """``git rev-parse HEAD`` of the repository this runs in."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git rev-parse HEAD failed; pass --commit: {done.stderr.strip()}")
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the reader, student and instructor "
                                                 "editions of the book's executed notebooks.")
    parser.add_argument("--executed", default="_build/jupyter_execute/book",
                        help="folder of the executed notebooks (default: %(default)s)")
    parser.add_argument("--out", default="editions", help="where to write (default: %(default)s)")
    parser.add_argument("--commit", help="commit the set-up cells install (default: git HEAD)")
    parser.add_argument("--site-url", default=SITE_URL, help="the published book (default: %(default)s)")
    parser.add_argument("--book", default="book", help="the book's sources, for page titles")
    args = parser.parse_args(argv)
    book = Path(args.book) if Path(args.book).is_dir() else None
    try:
        written = write_editions(Path(args.executed), Path(args.out), commit=args.commit or head_commit(),
                                 site_url=args.site_url, book=book)
    except (EditionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for edition, paths in written.items():
        print(f"{edition:10s} {len(paths)} notebooks in {Path(args.out) / edition}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
