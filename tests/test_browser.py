"""The built book, checked the way a reader sees it: in headless Chromium.

The first test builds the book exactly as `make book` does (warnings as errors, nitpicky
references), unless a build newer than every source already exists (fixture `built_book` in
conftest.py, shared with the other modules that need the build). In CI the CI profile makes that
build quick. The browser tests then serve `_build/html` on 127.0.0.1 and open every page in
headless Chromium (fixture `browser` in conftest.py).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [TOC["root"]] + [ch["file"] for part in TOC["parts"] for ch in part["chapters"]]
CHAPTERS = [p for p in PAGES if re.fullmatch(r"book/ch\d\d_\w+", p)]
# The branch the Colab buttons open: the reader edition, published there by the Pages workflow.
COLAB_BRANCH = CONFIG["sphinx"]["config"]["colab_launch_branch"]


def test_book_builds_warning_free_with_every_page(built_book):
    for page in PAGES:
        assert (built_book / f"{page}.html").exists(), page


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.links.append(attrs["src"])


def test_internal_links_and_images_resolve(built_book):
    for page in PAGES:
        path = built_book / f"{page}.html"
        parser = _Links()
        parser.feed(path.read_text())
        for link in parser.links:
            if re.match(r"^[a-z]+:|^#|^//", link):
                continue
            target = (path.parent / link.split("#")[0].split("?")[0]).resolve()
            assert target.exists(), f"{page}: broken link {link}"


@pytest.fixture(scope="session")
def server(built_book):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _open(browser, url: str):
    """Open a page, recording JavaScript errors and console errors raised by the book itself.

    Requests to other hosts (MathJax and the widget manager come from a CDN) are blocked, as
    this machine reaches no CDN; errors about those resources are not the book's.
    """
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def on_console(msg):
        location = msg.location.get("url", "") if msg.location else ""
        if msg.type == "error" and location.startswith("http://127.0.0.1"):
            errors.append(f"console: {msg.text} ({location})")

    page.on("console", on_console)
    page.route(re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort())
    page.goto(url, wait_until="load")
    return page, errors


@pytest.fixture(scope="session")
def seen():
    """What Chromium showed of each page, by page name: each page is opened once and read for
    every test below that looks at it (its errors, its images, its Colab links, its text)."""
    return {}


def _seen(seen: dict, browser, server: str, page_name: str) -> dict:
    if page_name not in seen:
        page, errors = _open(browser, f"{server}/{page_name}.html")
        seen[page_name] = {
            "errors": errors,
            "images": page.eval_on_selector_all(
                "article img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"),
            "colab": page.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.href)"),
            "text": page.locator("article").inner_text(),
        }
        page.close()
    return seen[page_name]


@pytest.mark.parametrize("page_name", PAGES)
def test_every_page_loads_without_errors_and_its_figures_load(browser, server, built_book, seen, page_name):
    view = _seen(seen, browser, server, page_name)
    broken = [src for src, ok in view["images"] if not ok]
    assert not view["errors"], view["errors"]
    assert not broken, f"images that did not load: {broken}"
    assert len(view["images"]) >= _figures_computed(built_book, page_name), "every figure the notebook made is on the page"


def _figures_computed(built_book: Path, page_name: str) -> int:
    """How many images the executed notebook behind a page produced (0 for plain pages)."""
    executed = built_book.parent / "jupyter_execute" / f"{page_name}.ipynb"
    if not executed.exists():
        return 0
    cells = json.loads(executed.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_colab_button_opens_this_chapters_notebook(browser, server, seen, chapter):
    """The button opens the reader edition of this chapter: the `colab` branch, where the Pages
    workflow publishes it at the chapter's own path (tests/test_publishing.py checks that)."""
    hrefs = _seen(seen, browser, server, chapter)["colab"]
    owner_repo = "/".join(CONFIG["repository"]["url"].rstrip("/").split("/")[-2:])
    assert COLAB_BRANCH == "colab" != CONFIG["repository"]["branch"]
    expected = f"https://colab.research.google.com/github/{owner_repo}/blob/{COLAB_BRANCH}/{chapter}.ipynb"
    assert hrefs == [expected], "one Colab button, opening the reader edition of this chapter"


MARKDOWN_PAGES = [p for p in PAGES if (ROOT / f"{p}.md").exists()]


@pytest.mark.parametrize("page_name", MARKDOWN_PAGES)
def test_markdown_pages_offer_no_colab_button(browser, server, seen, page_name):
    """Only notebooks have a reader edition on the `colab` branch; Colab opens no .md file."""
    assert _seen(seen, browser, server, page_name)["colab"] == []


def test_solutions_start_hidden_and_open_on_click(browser, server):
    page, errors = _open(browser, f"{server}/book/ch06_the_convolutional_layer.html")
    solution = page.locator("div.solution.dropdown").first
    body = solution.locator("section#solution-content")
    assert solution.count() == 1 and not body.is_visible(), "solutions start hidden"
    solution.locator(".toggle-button, button").first.click()
    body.wait_for(state="visible", timeout=5000)
    assert "conv2d_valid" in body.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{server}/book/ch06_the_convolutional_layer.html")
    page.screenshot(path=str(SCREENSHOTS / "ch06_the_convolutional_layer.png"))
    page.close()
    assert not errors, errors
    assert (SCREENSHOTS / "ch06_the_convolutional_layer.png").stat().st_size > 10_000


NOTEBOOK_PAGES = [p for p in PAGES if (ROOT / f"{p}.ipynb").exists()]


@pytest.mark.parametrize("page_name", NOTEBOOK_PAGES)
def test_every_executed_page_tells_readers_how_long_it_takes_to_run(browser, server, seen, page_name):
    text = _seen(seen, browser, server, page_name)["text"]
    statement = re.search(r"Time to run this page: about .*? on a CPU.*?On a GPU:", text, re.S)
    assert statement, "the run time is stated near the top"
    assert text.index("Time to run this page") < len(text) // 4
    assert "show_run_time" not in text, "readers see the sentence, not the code behind it"


def test_instructors_page_shows_every_pages_run_times_as_a_table(browser, server):
    page, _ = _open(browser, f"{server}/book/instructors.html")
    tables = page.eval_on_selector_all(
        "article table", "ts => ts.map(t => [...t.rows].map(tr => [...tr.cells].map(c => c.innerText.trim())))")
    page.close()
    wanted = ["Page", "CPU, cached", "CPU, fresh runtime", "GPU, cached", "GPU, fresh runtime"]
    found = [t for t in tables if t and t[0] == wanted]
    assert len(found) == 1, f"one run-times table on the page; its tables start with {[t[0] for t in tables if t]}"
    header, *body = [r for r in found[0] if r]
    assert len(body) == len(NOTEBOOK_PAGES)
    assert body[5][0] == "6. The convolutional layer"
    assert all(re.fullmatch(r"(\d+ min )?\d+ s|\d+ min", cell) for row in body for cell in row[1:3])


@pytest.mark.parametrize("query, page_stem", [
    ("output size formula", "ch06_the_convolutional_layer.html#the-output-size-formula"),
    ("Adam update", "ch10_training_with_adam.html#the-adam-update"),
    ("validation split", "ch10_training_with_adam.html#the-validation-split"),
])
def test_the_search_box_finds_the_key_ideas(browser, server, query, page_stem):
    """What a reader types into the book's search box: Sphinx's own search page, run by its
    JavaScript in the browser, lists the section that explains the idea among its first results."""
    page, errors = _open(browser, f"{server}/search.html?q={query.replace(' ', '+')}")
    page.wait_for_selector("#search-results ul li a, #search-results p", timeout=30_000)
    page.wait_for_function("() => !document.querySelector('#search-progress')"
                           " || document.querySelector('#search-progress').innerText.trim() === ''"
                           " || document.querySelectorAll('#search-results ul li').length > 0",
                           timeout=30_000)
    links = page.eval_on_selector_all("#search-results ul li a",
                                      "as => as.map(a => a.getAttribute('href'))")
    page.close()
    assert not errors, errors
    assert any(page_stem in href for href in links[:5]), f"{query!r}: first results {links[:5]}"
