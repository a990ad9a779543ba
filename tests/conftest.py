"""Shared fixtures: the real MNIST, loaded once per test session."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mnist_lessons.data import MNIST, load_mnist  # noqa: E402


@pytest.fixture(scope="session")
def mnist() -> MNIST:
    """The real 60,000/10,000 MNIST from the course cache (prepared by the set-up)."""
    return load_mnist()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# The built book, shared by every test module that needs it (the book build happens at most
# once per session, and only when out of date), and headless Chromium for the tests that look
# at pages the way a reader does (tests/test_browser.py, tests/test_colab_render.py).
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _book_sources() -> list[Path]:
    """Every file whose change makes the built book out of date: the configuration, the pages,
    the local Sphinx extensions and the package the pages import (its tooling included)."""
    files = [_ROOT / "_config.yml", _ROOT / "_toc.yml", *_ROOT.glob("book/*"), *_ROOT.glob("book/_ext/*.py"),
             *_ROOT.glob("mnist_lessons/**/*.py"), *_ROOT.glob("mnist_lessons/**/*.json")]
    return [f for f in files if f.is_file()]


@pytest.fixture(scope="session")
def built_book() -> Path:
    """`_build/html`, built now with the README's book command unless already up to date.

    `MNIST_LESSONS_BUILD=<folder>` uses the `_build` folder of a build made elsewhere instead
    (e.g. `jupyter-book build . --path-output /tmp/jb` gives `/tmp/jb/_build`): its `html` and
    `jupyter_execute`, as they are; nothing is built.
    """
    given = os.environ.get("MNIST_LESSONS_BUILD")
    if given:
        return Path(given) / "html"
    html = _ROOT / "_build" / "html"
    index = html / "book" / "intro.html"
    if not index.exists() or index.stat().st_mtime < max(f.stat().st_mtime for f in _book_sources()):
        jb = Path(sys.executable).with_name("jupyter-book")
        done = subprocess.run([str(jb), "build", str(_ROOT), "--all", "-W", "-n", "--keep-going"],
                              cwd=_ROOT, capture_output=True, text=True, timeout=3000)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert "build succeeded" in done.stdout
    return html


@pytest.fixture(scope="session")
def executed_book(request) -> Path:
    """The notebooks the book build executed (`_build/jupyter_execute/book`, with each page's
    `.glue.json`), building the book first if it is out of date (`built_book`).

    `MNIST_LESSONS_EXECUTED=<folder>` uses the executed notebooks of a build made elsewhere
    instead (e.g. `jupyter-book build . --path-output /tmp/jb` gives
    `/tmp/jb/_build/jupyter_execute/book`) and builds nothing.
    """
    given = os.environ.get("MNIST_LESSONS_EXECUTED")
    if given:
        return Path(given)
    html = request.getfixturevalue("built_book")
    return html.parent / "jupyter_execute" / "book"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's), driven by Playwright; skipped where it is not installed,
    a failure in CI (the set-up, make env, installs it there)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: the set-up (make env) installs Debian's chromium")
        pytest.skip("no Chromium on this machine: `apt-get install chromium` to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()
