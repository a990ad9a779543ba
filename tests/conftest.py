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


# The built book, shared by every test module that needs it (tests/test_browser.py still has its
# own copy of ``built_book``, which takes precedence there; both build only when out of date, so
# a session builds at most once).
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]


def _book_sources() -> list[Path]:
    files = [_ROOT / "_config.yml", _ROOT / "_toc.yml", *_ROOT.glob("book/*"), *_ROOT.glob("mnist_lessons/*.py"),
             *_ROOT.glob("mnist_lessons/*.json")]
    return [f for f in files if f.is_file()]


@pytest.fixture(scope="session")
def built_book() -> Path:
    """`_build/html`, built now with the README's book command unless already up to date."""
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
    request.getfixturevalue("built_book")
    return _ROOT / "_build" / "jupyter_execute" / "book"
