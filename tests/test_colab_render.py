"""A reader-edition chapter, rendered the way a notebook front end renders its Markdown.

Colab cannot be reached from CI, so this renders the reader edition of chapter 10 with
nbconvert's HTML export (which renders each Markdown cell to HTML, as Colab and Jupyter do, and
shows the stored outputs), opens it in headless Chromium (fixture ``browser`` in conftest.py),
and reads the page's visible text: every value the book glued into the chapter's prose is there,
marked as computed when the book was built, and no MyST is left for a reader to see. A
screenshot is kept in ``artifacts/screenshots/colab-reader-<chapter>.png``.

The expected values come from the build's ``<page>.glue.json`` and the ``{glue:text}`` roles of
the source notebook, read here with a plain pattern, not by the module under test.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from mnist_lessons.tools.editions import write_editions

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "ch10_training_with_adam"
SCREENSHOT = ROOT / "artifacts" / "screenshots" / f"colab-reader-{CHAPTER}.png"
RAW_MARKUP = ("{glue", "```{", ":::{", "{doc}", "{ref}", "{numref}", "{eq}", "{exercise",
              "{solution", "{admonition}", "{note}")


def _glued_in_prose(stem: str) -> set[str]:
    """The names the chapter's Markdown cites with ``{glue:text}`` (no format spec is used)."""
    nb = nbformat.read(ROOT / "book" / f"{stem}.ipynb", as_version=4)
    names = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for name in re.findall(r"\{glue:text\}`([^`]+)`", cell.source):
                assert ":" not in name, f"{name}: format specs are not handled by this oracle"
                names.add(name)
    return names


def _glued_value(executed: Path, stem: str, name: str) -> str:
    text = json.loads((executed / f"{stem}.glue.json").read_text())[name]["data"]["text/plain"]
    try:
        return str(ast.literal_eval(text))
    except (SyntaxError, ValueError):
        return text


@pytest.fixture(scope="module")
def rendered(executed_book, tmp_path_factory) -> Path:
    """The reader edition of the chapter, exported to one HTML file by nbconvert."""
    from nbconvert import HTMLExporter

    out = tmp_path_factory.mktemp("render")
    written = write_editions(executed_book, out / "editions", commit="0" * 40, book=ROOT / "book")
    notebook = next(p for p in written["reader"] if p.stem == CHAPTER)
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(notebook, as_version=4))
    page = out / f"{CHAPTER}.html"
    page.write_text(html, encoding="utf-8")
    return page


def test_reader_chapter_shows_the_glued_numbers_and_no_raw_markup(browser, rendered, executed_book):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # Nothing from the network (MathJax and require.js come from a CDN): the page alone.
    page.route(re.compile(r"^(?!file://).*"), lambda route: route.abort())
    page.goto(rendered.as_uri(), wait_until="load")
    shown = page.locator("body").inner_text()
    assert "Training with Adam" in shown and "Exercise 10.1" in shown, shown[:500]
    folded = page.locator("details").count()
    page.eval_on_selector_all("details", "els => els.forEach(e => e.open = true)")  # the solutions
    text = page.locator("body").inner_text()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    first = page.get_by_text(re.compile("computed when the book was built")).first
    first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOT))
    page.close()

    names = _glued_in_prose(CHAPTER)
    assert len(names) >= 10, names
    for name in sorted(names):
        value = _glued_value(executed_book, CHAPTER, name)
        assert f"{value}†" in text, f"{name} = {value!r} is not on the page"
    assert "computed when the book was built" in shown
    for markup in RAW_MARKUP:
        assert markup not in text, f"raw markup {markup!r} on the page"
    assert folded >= 1, "the text of the solutions is folded away in <details>"
    assert SCREENSHOT.stat().st_size > 10_000
