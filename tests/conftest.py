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


@pytest.fixture(scope="session")
def mnist_1000_test(mnist) -> MNIST:
    """Real MNIST with all 60,000 training images (so the same 5,000 validation images) and the
    first 1,000 test images, for the tests of training: ``train`` measures the test set once
    after the last step, and measuring 1,000 images instead of 10,000 takes a tenth of the
    time where the test set's size is not what a test is about."""
    return MNIST(mnist.x_train, mnist.y_train, mnist.x_test[:1000], mnist.y_test[:1000],
                 f"the 60,000 training and the first 1,000 test images of {mnist.source}")


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
import tempfile  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import Future  # noqa: E402
from pathlib import Path  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _book_sources() -> list[Path]:
    """Every file whose change makes the built book out of date: the configuration, the pages,
    the local Sphinx extensions and the package the pages import (its tooling included)."""
    files = [_ROOT / "_config.yml", _ROOT / "_toc.yml", *_ROOT.glob("book/*"), *_ROOT.glob("book/_ext/*.py"),
             *_ROOT.glob("mnist_lessons/**/*.py"), *_ROOT.glob("mnist_lessons/**/*.json")]
    return [f for f in files if f.is_file()]


#: Fixtures that need the built book; the tests that use them (or are marked ``after_build``)
#: run after all the others, while the build runs in the background (``pytest_collection_finish``).
BUILD_FIXTURES = {"built_book", "executed_book"}
_BACKGROUND: dict = {}  # the background build: its process and log file
_BUILD_LOCK = threading.Lock()  # the build is awaited by the tests and by background work
#: Background work of test modules (``IN_BACKGROUND``), by module name: Futures.
_MODULE_WORK: dict[str, Future] = {}


def _needs_build(item) -> bool:
    return bool(BUILD_FIXTURES & set(getattr(item, "fixturenames", ()))) or \
        item.get_closest_marker("after_build") is not None


def _build_is_current() -> bool:
    index = _ROOT / "_build" / "html" / "book" / "intro.html"
    return index.exists() and index.stat().st_mtime >= max(f.stat().st_mtime for f in _book_sources())


def pytest_configure(config):
    config.addinivalue_line("markers", "after_build: run after the book build, to reuse what it made")


def _group(item) -> int:
    """0: needs no build; 1: needs no build, has background work; 2: needs the build; 3: needs
    the build, has background work."""
    background = hasattr(getattr(item, "module", None), "IN_BACKGROUND")
    return 2 * _needs_build(item) + background


def pytest_collection_modifyitems(session, config, items):
    """The tests that need the book build go last (each group keeps its order), so that the
    others run while the build runs in the background; and in each of the two groups, the
    modules with background work of their own (``IN_BACKGROUND``) go last, so that everything
    else runs while it works. When this session builds the book, the order is then adjusted as
    the tests run (``pytest_runtestloop``)."""
    items.sort(key=_group)  # a stable sort: each group keeps its order


def _chunks(items: list) -> list[tuple[int, list]]:
    """The items in runs of one file and one group, the units that ``pytest_runtestloop`` may
    move (a module's fixtures are set up once per run)."""
    chunks: list[tuple[tuple, list]] = []
    for item in items:
        key = (item.path, _group(item))
        if chunks and chunks[-1][0] == key:
            chunks[-1][1].append(item)
        else:
            chunks.append((key, [item]))
    return [(key[1], run) for key, run in chunks]


def _next_chunk(chunks: list[tuple[int, list]]) -> list:
    """The run of tests to go next: in the collected order, except that once the background
    build has finished, the tests that need it (group 2) go before the remaining others."""
    if not chunks:
        return []
    at = 0
    process = _BACKGROUND.get("process")
    if process is not None and process.poll() is not None:
        at = next((i for i, (group, _) in enumerate(chunks) if group == 2), 0)
    return chunks.pop(at)[1]


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """pytest's own loop, with one change when this session builds the book in the background:
    as soon as the build has finished, the tests that need it run next (at the end of the file
    in progress), and the tests that do not need it, left over, after them. Those are mostly
    training on both cores, so the session ends with both cores busy, beside the Colab-like run,
    instead of with the browser tests, which use about one."""
    if session.testsfailed or session.config.option.collectonly or "process" not in _BACKGROUND:
        return None  # pytest's own loop, in the collected order
    chunks = _chunks(session.items)
    current = _next_chunk(chunks)
    while current:
        following: list = []
        for i, item in enumerate(current):
            if i + 1 < len(current):
                nextitem = current[i + 1]
            else:
                following = _next_chunk(chunks)
                nextitem = following[0] if following else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        current = following
    return True


def pytest_sessionstart(session):
    """When pytest runs the whole test folder (the README's test command), start the book build
    before collecting the tests (importing them takes seconds of one core); a selection that
    turns out not to need the build stops it again (``pytest_collection_finish``)."""
    config = session.config
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS and not config.option.collectonly \
            and not os.environ.get("MNIST_LESSONS_BUILD") and not _build_is_current():
        _start_build()


def pytest_collection_finish(session):
    """Start the book build (the README's book command) in the background now, if a selected
    test needs it and the build is out of date (and it has not started yet): the tests that do
    not need it run meanwhile, on the cores the build leaves idle (most of a page's time is one
    busy core)."""
    if session.config.option.collectonly:
        return
    needed = not os.environ.get("MNIST_LESSONS_BUILD") and any(_needs_build(i) for i in session.items)
    if needed and "process" not in _BACKGROUND and not _build_is_current():
        _start_build()
    elif not needed and "process" in _BACKGROUND:
        _stop_build()  # started before collection, for tests that were then deselected
        _BACKGROUND.clear()
    _start_module_work(session)


def _start_module_work(session) -> None:
    """Start, each in a thread of its own, the background work of the selected test modules:
    a module-level function ``IN_BACKGROUND(executed_book_when_built)``. It starts now, at the
    beginning of the session, and runs while the other tests run (its heavy work is in
    subprocesses: kernels, sandboxes); work that needs the executed book calls
    ``executed_book_when_built()``, which waits for the build, and prepares what needs no book
    before that. The module's tests get its result, or its exception, from the ``module_work``
    fixture; they run after the other tests of their group, when the work is likely done."""
    modules = {item.module for item in session.items if getattr(item, "module", None) is not None}
    for module in sorted(modules, key=lambda m: m.__name__):
        work = getattr(module, "IN_BACKGROUND", None)
        if work is None or module.__name__ in _MODULE_WORK:
            continue
        future: Future = Future()

        def run(work=work, future=future) -> None:
            try:
                future.set_result(work(_executed_book_when_built))
            except BaseException as failure:  # noqa: BLE001 - raised again by module_work
                future.set_exception(failure)

        _MODULE_WORK[module.__name__] = future
        threading.Thread(target=run, name=f"background work of {module.__name__}", daemon=True).start()


@pytest.fixture(scope="module")
def module_work(request):
    """The result of this module's ``IN_BACKGROUND``, once it has finished."""
    future = _MODULE_WORK.get(request.module.__name__)
    if future is None:
        pytest.fail(f"{request.module.__name__} has no background work (IN_BACKGROUND)")
    return future.result()


def _start_build() -> None:
    """Run the README's book command in the background, its output kept for the verdict."""
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed when the build is collected
    jb = Path(sys.executable).with_name("jupyter-book")
    _BACKGROUND["process"] = subprocess.Popen(
        [str(jb), "build", str(_ROOT), "--all", "-W", "-n", "--keep-going"], cwd=_ROOT,
        stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _BACKGROUND["log"] = log


def pytest_unconfigure(config):
    _stop_build()


def _stop_build() -> None:
    """Stop the background build if it still runs (the session ended early)."""
    process = _BACKGROUND.get("process")
    if process is not None and process.poll() is None:
        import signal

        os.killpg(process.pid, signal.SIGTERM)  # the build, its workers and their kernels
        try:
            process.wait(timeout=10)
        finally:  # its worker processes were seen to outlive SIGTERM: no stragglers
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_for_background_build() -> None:
    with _BUILD_LOCK:
        process = _BACKGROUND.get("process")
        if process is None or "done" in _BACKGROUND:
            return
        process.wait(timeout=3000)
        log = _BACKGROUND["log"]
        log.seek(0)
        output = log.read()
        log.close()
        _BACKGROUND["done"] = (process.returncode, output)
        # Kept for a look afterwards: among the rest, each page's execution time.
        (_ROOT / "artifacts").mkdir(exist_ok=True)
        (_ROOT / "artifacts" / "book_build.log").write_text(output)


def _built_html() -> Path:
    """`_build/html` once built (see the ``built_book`` fixture); fails with the build's log if
    the build failed. Also called from background work's threads, hence the lock."""
    given = os.environ.get("MNIST_LESSONS_BUILD")
    if given:
        return Path(given) / "html"
    with _BUILD_LOCK:
        if "process" not in _BACKGROUND and not _build_is_current():
            _start_build()
    _wait_for_background_build()
    if "done" in _BACKGROUND:
        returncode, output = _BACKGROUND["done"]
        assert returncode == 0, output[-4000:]
        assert "build succeeded" in output
    return _ROOT / "_build" / "html"


def _executed_book_when_built() -> Path:
    """The notebooks the book build executed (see the ``executed_book`` fixture), once built."""
    given = os.environ.get("MNIST_LESSONS_EXECUTED")
    if given:
        return Path(given)
    return _built_html().parent / "jupyter_execute" / "book"


@pytest.fixture(scope="session")
def built_book() -> Path:
    """`_build/html`, built with the README's book command unless already up to date: by the
    build started in the background when the session began, else now.

    `MNIST_LESSONS_BUILD=<folder>` uses the `_build` folder of a build made elsewhere instead
    (e.g. `jupyter-book build . --path-output /tmp/jb` gives `/tmp/jb/_build`): its `html` and
    `jupyter_execute`, as they are; nothing is built.
    """
    return _built_html()


@pytest.fixture(scope="session")
def finished_build() -> Path | None:
    """The `_build` folder once the book build this session started has finished (or the one
    named by `MNIST_LESSONS_BUILD`), for tests that reuse what a build made when there is one;
    None when no build was started (nothing is built for them)."""
    if os.environ.get("MNIST_LESSONS_BUILD"):
        return Path(os.environ["MNIST_LESSONS_BUILD"])
    _wait_for_background_build()
    return _ROOT / "_build" if "done" in _BACKGROUND and _BACKGROUND["done"][0] == 0 else None


@pytest.fixture(scope="session")
def executed_book() -> Path:
    """The notebooks the book build executed (`_build/jupyter_execute/book`, with each page's
    `.glue.json`), building the book first if it is out of date (`built_book`).

    `MNIST_LESSONS_EXECUTED=<folder>` uses the executed notebooks of a build made elsewhere
    instead (e.g. `jupyter-book build . --path-output /tmp/jb` gives
    `/tmp/jb/_build/jupyter_execute/book`) and builds nothing.
    """
    return _executed_book_when_built()


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
