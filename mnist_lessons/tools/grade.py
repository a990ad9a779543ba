"""Grade a class's notebooks with the book's own checkers, each in a fresh, sandboxed kernel.

    python -m mnist_lessons.tools.grade SUBMISSIONS --out OUT

``SUBMISSIONS`` holds one entry per student: a folder of their notebooks (any of the student
edition's chapters, filled in) or a single notebook. The command writes

``OUT/gradebook.csv``
    one row per exercise of every notebook: ``submission, chapter, exercise, passed, hint``
    (``passed`` is ``yes`` or ``no``; ``hint`` is the checker's hint for the first case that
    failed, or why the notebook could not be graded).
``OUT/feedback/<submission>.md``
    for the student: each exercise, passed or not, every case the checker tried with its hint,
    how long it ran, and what went wrong in the notebook (a cell that raised, output cut short,
    time run out).

How one notebook is graded:

1. Its chapter comes from its file name (``ch07_...``) or its title (``# 7. Pooling``); its
   exercises are the checkers of that chapter in :data:`mnist_lessons.exercises.CHECKERS`.
2. A fresh Jupyter kernel starts (nbclient) in a new temporary folder, inside a bubblewrap
   sandbox (:func:`sandbox_command`): it sees the system's programs, the Python environment and
   the course package read-only, its own folder and a private ``/tmp`` writable, and nothing
   else: not the book's sources, not the instructor edition, not other submissions, not the
   network. Run as root, the grader also runs the kernel as the unprivileged user ``nobody``.
   Resource limits cap its memory, the size of any file it writes and its processes.
3. The kernel runs the notebook's exercise section top to bottom (the code cells from the
   "Exercises" heading on, except the checks themselves), after the chapter's imports (made
   lazily, so TensorFlow loads only if an answer uses it). An error in a cell is noted, not
   fatal; output beyond the limit is dropped; a cell past the notebook's time limit is
   interrupted.
4. The checker runs here, in the grader, not in the kernel: each time it calls the student's
   function, the arguments go to the kernel as data (:mod:`~mnist_lessons.tools.grade_codec`),
   the function runs there, and its result comes back as data. So an answer can neither see
   the expected values nor change the checker. A call that runs past ``--call-time`` is
   interrupted and reported as the checker reports a slow answer in the notebook.
5. The kernel is shut down and its folder deleted.

What it does not protect against is said in the instructors page (book/instructors.md).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

GRADEBOOK_COLUMNS = ("submission", "chapter", "exercise", "passed", "hint")
NOBODY = 65534
NOTEBOOK_SUFFIX = ".ipynb"
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
_EXERCISES_HEADING = re.compile(r"^#{1,6}\s+Exercises?\b", re.M)
_CHAPTER_IN_NAME = re.compile(r"(?:^|[^a-z0-9])ch(?:apter)?[_ -]?0*(\d{1,2})(?:[^0-9]|$)", re.I)
_CHAPTER_IN_TITLE = re.compile(r"^#\s+(\d{1,2})\.\s", re.M)


class GraderError(RuntimeError):
    """The grader itself cannot run (no sandbox, a bad option); the message says what to do."""


@dataclass(frozen=True)
class Limits:
    """What one notebook may use. Times in seconds, sizes in MB (output in KB)."""

    notebook_s: float = 300.0
    exercise_s: float = 120.0
    call_s: float = 20.0
    memory_mb: int = 4096
    output_kb: int = 1024
    file_mb: int = 64
    processes: int = 256

    def __post_init__(self) -> None:
        for name in ("notebook_s", "exercise_s", "call_s", "memory_mb", "output_kb", "file_mb", "processes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise GraderError(f"the limit {name} must be a positive number, got {value!r}")
        if self.memory_mb < 512:
            raise GraderError(f"memory_mb={self.memory_mb} is too little for a Python kernel: give at least 512")


@dataclass
class ExerciseResult:
    """One exercise of one notebook: the verdict and what the student reads about it."""

    exercise: str
    passed: bool
    hint: str
    cases: list[tuple[str, bool, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class NotebookResult:
    """One notebook: its chapter, its exercises' results and notes on the run."""

    submission: str
    file: str
    chapter: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# What to grade


def exercises_of(chapter: int) -> list[tuple[str, Callable, str]]:
    """The checked exercises of a chapter: ``(number, checker, name of the student's function)``.

    The function's name is the one the checker's docstring gives (``Exercise 7.1:
    ``max_pool_2x2(m)``...``), which is the name the student edition's stub defines.
    """
    from mnist_lessons.exercises import CHECKERS

    found = []
    for number, checker in CHECKERS.items():
        if number.split(".")[0] != str(chapter):
            continue
        match = re.search(r"``(\w+)\(", checker.__doc__ or "")
        if not match:
            raise GraderError(f"the docstring of {checker.__name__} does not name the function it checks")
        found.append((number, checker, match.group(1)))
    return found


def chapter_of(file_name: str, nb: Any | None) -> int | None:
    """The chapter a notebook belongs to: from its file name (``ch07_pooling.ipynb``, also with
    a prefix such as ``alice_ch07...``), else from its title (``# 7. Pooling``), else ``None``."""
    match = _CHAPTER_IN_NAME.search(Path(file_name).stem)
    if match:
        return int(match.group(1))
    for cell in (nb.cells if nb is not None else []):
        if cell.get("cell_type") == "markdown":
            title = _CHAPTER_IN_TITLE.search(str(cell.get("source", "")))
            if title:
                return int(title.group(1))
    return None


def submissions_in(folder: Path) -> list[tuple[str, list[Path], list[Path]]]:
    """``(name, notebooks, other files)`` for each entry of ``folder``, sorted by name.

    A sub-folder is one student's submission (its notebooks, searched recursively); a file on
    its own is a submission by itself. Hidden files (``.DS_Store``, ``.ipynb_checkpoints``) are
    left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GraderError(f"{folder} is not a folder: give the folder that holds the submissions")
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(entry).parts))
            notebooks = [p for p in files if p.suffix == NOTEBOOK_SUFFIX]
            out.append((entry.name, notebooks, [p for p in files if p.suffix != NOTEBOOK_SUFFIX]))
        elif entry.suffix == NOTEBOOK_SUFFIX:
            out.append((entry.stem, [entry], []))
        else:
            out.append((entry.name, [], [entry]))
    return out


def cells_to_run(nb: Any) -> tuple[list[str], list[tuple[int, str]]]:
    """The chapter's imports and the code of the exercise section, from a student's notebook.

    Returns ``(imports, cells)``: every top-level ``import`` of the code cells before the
    "Exercises" heading, and ``(index, source)`` of each code cell from that heading on, the
    automatic checks left out (the grader runs them itself). A notebook without the heading
    runs all its code cells.
    """
    cells = list(nb.cells)
    start = next((i for i, c in enumerate(cells) if c.get("cell_type") == "markdown"
                  and _EXERCISES_HEADING.search(str(c.get("source", "")))), 0)
    imports: list[str] = []
    for cell in cells[:start]:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(str(cell.get("source", "")))
        except SyntaxError:
            continue
        imports += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    run = [(i, without_checks(str(c.get("source", "")))) for i, c in enumerate(cells)
           if i >= start and c.get("cell_type") == "code"]
    return imports, [(i, source) for i, source in run if source.strip()]


def without_checks(source: str) -> str:
    """A cell's code without its automatic check: the top-level ``check_...(...)`` calls (and
    otter-grader's ``grader.check(...)``) and the imports from ``mnist_lessons.exercises`` are
    removed, everything else is kept (a student who wrote the answer into the check's cell keeps
    the answer). Code that does not parse is
    kept as it is: it will raise its SyntaxError in the kernel, as in the student's notebook."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else None
        func = call.func if call is not None else None
        is_check = (isinstance(func, ast.Name) and func.id.startswith("check_")) or (
            isinstance(func, ast.Attribute) and func.attr in ("check", "check_all")
            and isinstance(func.value, ast.Name) and func.value.id == "grader")  # otter's checks
        is_import = isinstance(node, ast.ImportFrom) and node.module == "mnist_lessons.exercises"
        if is_check or is_import:
            drop.update(range(node.lineno - 1, node.end_lineno))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


# ---------------------------------------------------------------------------------------------
# The sandbox


def _package_root() -> Path:
    import mnist_lessons

    return Path(mnist_lessons.__file__).resolve().parent


def sandbox_command(isolation: str, workdir: Path, ipcdir: Path, limits: Limits) -> list[str]:
    """The command line that starts a kernel in its sandbox (``{connection_file}`` is filled in
    by jupyter_client).

    ``isolation="bwrap"``: bubblewrap with a new mount, PID, network, IPC and UTS namespace; the
    root file system is empty except for read-only system folders, the Python installation and
    environment and the course package (alone, not the repository around it), the notebook's
    own folder (read-write, the working directory) and the kernel's connection folder. Run as
    root, the kernel then drops to the user ``nobody`` (setpriv), so processes and files are
    not root's. ``isolation="none"``: no sandbox (for use inside a container): the same limits,
    environment and working folder, nothing hidden.
    """
    python = Path(sys.executable)
    prefix, base = Path(sys.prefix), Path(sys.base_prefix).resolve()
    package = _package_root()
    env = {
        "HOME": str(workdir), "PYTHONPATH": f"/grade/pkg" if isolation == "bwrap" else str(workdir / ".pkg"),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/mpl", "TF_CPP_MIN_LOG_LEVEL": "2", "MNIST_LESSONS_CACHE": "/tmp/cache",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter", "IPYTHONDIR": "/tmp/ipython", "LANG": "C.UTF-8",
        "PATH": f"{prefix / 'bin'}:/usr/local/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(prefix),
    }
    launch = [str(python), "-c", _LAUNCHER, json.dumps({
        "as": limits.memory_mb * 2**20, "fsize": limits.file_mb * 2**20,
        # processes are counted per user: capped only for the kernel's own user, nobody
        "nproc": limits.processes if isolation == "bwrap" and os.geteuid() == 0 else 0}),
        "-f", "{connection_file}"]
    if isolation == "none":
        return ["env", "-i", *[f"{k}={v}" for k, v in env.items()], *launch]
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise GraderError("bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: apt-get install "
                          "bubblewrap), or grade inside a container with --isolation none")
    cmd = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc",
           "--unshare-uts", "--unshare-cgroup-try", "--hostname", "grader", "--clearenv"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    for system in ("/usr", "/etc", "/opt"):
        if Path(system).is_dir():
            cmd += ["--ro-bind", system, system]
    for link in ("/bin", "/lib", "/lib32", "/lib64", "/sbin"):
        path = Path(link)
        if path.is_symlink():
            cmd += ["--symlink", os.readlink(path), link]
        elif path.is_dir():
            cmd += ["--ro-bind", link, link]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[str] = {"/", "/usr", "/etc", "/opt", "/tmp", "/proc", "/dev"}

    def parents(path: Path) -> list[str]:
        out = []
        for parent in reversed(path.parents):
            if str(parent) not in made and not str(parent).startswith(("/usr/", "/etc/", "/opt/")):
                made.add(str(parent))
                out += ["--perms", "0755", "--dir", str(parent)]
        return out

    for path, mode in ((base, "--ro-bind"), (prefix, "--ro-bind"), (python.resolve().parent, "--ro-bind"),
                       (ipcdir, "--bind"), (workdir, "--bind")):
        if str(path).startswith(("/usr/", "/etc/", "/opt/")) or str(path) in made:
            continue
        cmd += parents(path) + [mode, str(path), str(path)]
        made.add(str(path))
    cmd += ["--perms", "0755", "--dir", "/grade", "--perms", "0755", "--dir", "/grade/pkg",
            "--ro-bind", str(package), "/grade/pkg/mnist_lessons", "--chdir", str(workdir)]
    if os.geteuid() == 0:  # drop root inside: the kernel runs as nobody, without capabilities
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    else:
        cmd += ["--"]
    return cmd + launch


# Runs first in the kernel's process, inside the sandbox: set the resource limits, make an
# oversized write fail with an error instead of killing the kernel, then become the kernel.
_LAUNCHER = textwrap.dedent("""
    import json, os, resource, signal, sys
    limits = json.loads(sys.argv[1])
    for name, key in (("RLIMIT_AS", "as"), ("RLIMIT_FSIZE", "fsize"), ("RLIMIT_NPROC", "nproc")):
        if limits.get(key):
            resource.setrlimit(getattr(resource, name), (limits[key], limits[key]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    for folder in ("/tmp/mpl", "/tmp/cache", "/tmp/jupyter", "/tmp/ipython"):
        os.makedirs(folder, exist_ok=True)
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "--HistoryManager.enabled=False",
                              "--IPKernelApp.capture_fd_output=False", *sys.argv[2:]])
""")

# Runs in the kernel before the student's cells: caps what the kernel prints, binds the
# chapter's imports lazily, and defines the function the grader calls.
_PREAMBLE = textwrap.dedent("""
    def _grade_setup(limit, imports):
        import importlib, json, sys
        from ipykernel.iostream import OutStream
        state = {"left": limit, "cut": False}
        write = OutStream.write
        def capped(self, text):
            if not isinstance(text, str) or state["left"] > len(text):
                state["left"] -= len(text) if isinstance(text, str) else 0
                return write(self, text)
            if state["left"] > 0:
                write(self, text[:state["left"]])
                state["left"] = 0
            if not state["cut"]:
                state["cut"] = True
                write(self, "\\n[output cut: the grader keeps %d characters]\\n" % limit)
            return len(text)
        OutStream.write = capped

        class Lazy:
            def __init__(self, name, module, attr, also):
                self._grade = (name, module, attr, also)
            def _load(self):
                name, module, attr, also = self._grade
                mod = importlib.import_module(module)
                for extra in also:
                    importlib.import_module(extra)
                value = getattr(mod, attr) if attr else mod
                if get_ipython().user_ns.get(name) is self:
                    get_ipython().user_ns[name] = value
                return value
            def __getattr__(self, item):
                if item.startswith("_grade"):
                    raise AttributeError(item)
                return getattr(self._load(), item)
            def __call__(self, *args, **kwargs):
                return self._load()(*args, **kwargs)
            def __repr__(self):
                return repr(self._load())

        import numpy
        ns = get_ipython().user_ns
        ns["np"] = numpy
        for name, module, attr, also in imports:
            if name not in ns:
                ns[name] = numpy if module == "numpy" and not attr else Lazy(name, module, attr, also)

    def _grade_probe(name):
        from IPython.display import display
        from mnist_lessons.tools.grade_codec import RESULT_MIME, encode
        ns = get_ipython().user_ns
        value = ns.get(name, _grade_probe)
        kind = "missing" if value is _grade_probe else "none" if value is None else \\
            "callable" if callable(value) else "value"
        out = {"kind": kind, "value": encode(value) if kind == "value" else None}
        import json
        display({RESULT_MIME: json.dumps(out)}, raw=True)

    def _grade_call(name, payload):
        import json
        import numpy as np
        from IPython.display import display
        from mnist_lessons.tools.grade_codec import CALLBACK_MARK, RESULT_MIME, decode, encode

        def stand_in(index):
            def call_back(*args):
                reply = json.loads(input(CALLBACK_MARK + json.dumps([index, [encode(a) for a in args]])))
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return decode(reply["result"])
            return call_back

        args = [decode(a, stand_in) for a in json.loads(payload)]
        out = {}
        try:
            result = get_ipython().user_ns[name](*args)
            out["result"] = encode(result)
        except BaseException as err:
            text = str(err)
            out["error"] = [type(err).__name__, text[:2000]]
        try:
            out["args"] = [encode(a) if isinstance(a, (np.ndarray, np.random.Generator)) else None for a in args]
        except BaseException:
            out["args"] = [None] * len(args)
        display({RESULT_MIME: json.dumps(out)}, raw=True)
""")


def _import_bindings(imports: Iterable[str]) -> list[tuple[str, str, str | None, list[str]]]:
    """``(name, module, attribute, extra modules)`` for each name the import lines bind."""
    out = []
    for line in imports:
        try:
            node = ast.parse(line).body[0]
        except (SyntaxError, IndexError):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out.append((alias.asname, alias.name, None, []))
                else:
                    top = alias.name.split(".")[0]
                    out.append((top, top, None, [alias.name] if "." in alias.name else []))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name != "*":
                    out.append((alias.asname or alias.name, node.module, alias.name, []))
    return out


# ---------------------------------------------------------------------------------------------
# Running one notebook


def _notebook_client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """nbclient's client, keeping at most ``output_budget`` characters of output in all."""

        output_budget = 1_000_000
        output_cut = False

        def output(self, outs, msg, display_id, cell_index):  # noqa: D401 - nbclient's hook
            content = msg.get("content", {})
            if msg.get("msg_type") == "error":  # always kept (the grader reports it), made short
                content["traceback"] = [str(line)[:2000] for line in content.get("traceback", [])[-20:]]
                content["evalue"] = str(content.get("evalue", ""))[:2000]
                return super().output(outs, msg, display_id, cell_index)
            size = len(str(content.get("text", ""))) + sum(len(str(v)) for v in content.get("data", {}).values()) \
                + sum(len(str(line)) for line in content.get("traceback", []))
            if size > self.output_budget:
                self.output_budget = 0
                self.output_cut = True
                return None
            self.output_budget -= size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


class _Kernel:
    """A sandboxed kernel for one notebook: start, run cells, call functions, stop."""

    def __init__(self, isolation: str, limits: Limits, scratch: Path):
        from jupyter_client import AsyncKernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        self.limits = limits
        self.root = Path(tempfile.mkdtemp(prefix="grade-", dir=scratch))
        self.workdir, self.ipcdir, specs = self.root / "work", self.root / "ipc", self.root / "kernels"
        for folder in (self.workdir, self.ipcdir, specs / "grade"):
            folder.mkdir(parents=True)
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0 and isolation == "bwrap":
            for folder in (self.workdir, self.ipcdir):
                os.chown(folder, NOBODY, NOBODY)
        argv = sandbox_command(isolation, self.workdir, self.ipcdir, limits)
        if isolation == "none":
            shutil.copytree(_package_root(), self.workdir / ".pkg" / "mnist_lessons",
                            ignore=shutil.ignore_patterns("__pycache__"))
        (specs / "grade" / "kernel.json").write_text(json.dumps({
            "argv": argv, "display_name": "grader", "language": "python", "interrupt_mode": "signal"}))
        self.km = AsyncKernelManager(kernel_name="grade", transport="ipc", ip=str(self.ipcdir / "k"),
                                     kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]),
                                     connection_file=str(self.ipcdir / "kernel.json"))
        self.km.write_connection_file()
        os.chmod(self.ipcdir / "kernel.json", 0o644)
        self.client = None
        self.kc = None
        self.log = None

    def log_tail(self) -> str:
        try:
            return (self.root / "kernel.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def start(self, nb: Any) -> None:
        cls = _notebook_client_class()
        self.client = cls(nb, km=self.km, timeout=int(self.limits.notebook_s), allow_errors=True,
                          interrupt_on_timeout=True, startup_timeout=120, record_timing=False,
                          error_on_timeout={"ename": "TimeoutError", "evalue": "the cell ran out of time",
                                            "traceback": []},
                          resources={"metadata": {"path": str(self.workdir)}})
        self.client.output_budget = self.limits.output_kb * 1024
        self.log = open(self.root / "kernel.log", "wb")
        self.client.start_new_kernel(cwd=str(self.workdir), stdout=self.log, stderr=self.log)
        self.client.start_new_kernel_client()

    def run_cell(self, index: int, timeout: float) -> dict:
        self.client.timeout = max(1, int(timeout))
        self.client.execute_cell(self.client.nb.cells[index], index)
        return self.client.nb.cells[index]

    def blocking_client(self):
        if self.kc is None:
            from jupyter_client.blocking import BlockingKernelClient

            self.kc = BlockingKernelClient(connection_file=str(self.ipcdir / "kernel.json"))
            self.kc.load_connection_file()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=30)
        return self.kc

    def interrupt(self) -> None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is not None:
            try:
                os.killpg(os.getpgid(process.pid), signal.SIGINT)
            except (ProcessLookupError, PermissionError, OSError):
                pass

    def alive(self) -> bool:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return process is not None and process.poll() is None

    def stop(self) -> None:
        from nbclient.util import run_sync

        try:
            if self.kc is not None:
                self.kc.stop_channels()
            if self.client is not None and self.client.kc is not None:
                self.client.kc.stop_channels()
            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001 - the kernel may already be gone
            pass
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:
            try:
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            except OSError:
                pass
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


class _CallFailed(RuntimeError):
    pass


class KernelFunction:
    """The student's function as the checker sees it: calling it runs the function in the
    kernel on a copy of the arguments and returns a copy of the result.

    Arrays and random generators the function changed in place are changed here too, so a
    checker that looks for an input modified in place still sees it. A call past the call limit
    (or past the exercise's deadline) is interrupted and raises the checker's own time-out.
    """

    def __init__(self, kernel: _Kernel, name: str, deadline: float, call_s: float):
        self.kernel, self.name, self.deadline, self.call_s = kernel, name, deadline, call_s
        self.__name__ = name
        self.stuck = False

    def __call__(self, *args: Any) -> Any:
        from mnist_lessons import exercises
        from mnist_lessons.tools.grade_codec import CALLBACK_MARK, RESULT_MIME, decode, encode

        remaining = min(self.call_s - 0.5, self.deadline - time.monotonic())
        if remaining <= 0 or not self.kernel.alive():
            raise exercises._TimedOut()
        callbacks: list[Callable] = []
        payload = json.dumps([encode(a, callbacks) for a in args])
        kc = self.kernel.blocking_client()
        found: dict[str, Any] = {}

        def on_output(msg: dict) -> None:
            data = msg.get("content", {}).get("data", {})
            if msg.get("msg_type") == "display_data" and RESULT_MIME in data:
                found["out"] = data[RESULT_MIME]

        def on_input(msg: dict) -> None:
            prompt = str(msg.get("content", {}).get("prompt", ""))
            if not prompt.startswith(CALLBACK_MARK):
                kc.input("")
                return
            try:
                index, raw = json.loads(prompt[len(CALLBACK_MARK):])
                value = callbacks[int(index)](*[decode(a) for a in raw])
                kc.input(json.dumps({"result": encode(value)}))
            except Exception as err:  # noqa: BLE001 - reported to the kernel as the callback's error
                kc.input(json.dumps({"error": f"{type(err).__name__}: {err}"}))

        try:
            kc.execute_interactive(f"_grade_call({self.name!r}, {payload!r})", store_history=False,
                                   allow_stdin=True, output_hook=on_output, stdin_hook=on_input,
                                   timeout=remaining)
        except TimeoutError:
            self.kernel.interrupt()
            raise exercises._TimedOut() from None
        if "out" not in found:
            raise _CallFailed("the kernel did not return a result (did it crash?)")
        out = json.loads(found["out"])
        for arg, new in zip(args, out.get("args", [])):
            try:
                if new is not None and hasattr(arg, "shape") and hasattr(arg, "__setitem__"):
                    changed = decode(new)
                    if changed.shape == arg.shape:
                        arg[...] = changed
                elif new is not None and hasattr(arg, "bit_generator"):
                    arg.bit_generator.state = decode(new).bit_generator.state
            except Exception:  # noqa: BLE001 - a copy-back that does not fit is simply skipped
                pass
        if "error" in out:
            kind, text = out["error"]
            if kind == "NotImplementedError":
                raise NotImplementedError(text)
            raise type(str(kind)[:80] or "Exception", (Exception,), {})(text)
        return decode(out["result"])


def _probe(kernel: _Kernel, name: str) -> tuple[str, Any]:
    from mnist_lessons.tools.grade_codec import RESULT_MIME, decode

    found: dict[str, Any] = {}

    def on_output(msg: dict) -> None:
        data = msg.get("content", {}).get("data", {})
        if msg.get("msg_type") == "display_data" and RESULT_MIME in data:
            found["out"] = data[RESULT_MIME]

    try:
        kernel.blocking_client().execute_interactive(f"_grade_probe({name!r})", store_history=False,
                                                     output_hook=on_output, timeout=30)
    except TimeoutError:
        return "stuck", None
    if "out" not in found:
        return "stuck", None
    out = json.loads(found["out"])
    return out["kind"], (decode(out["value"]) if out.get("value") is not None else None)


def _cell_name(source: str) -> str:
    """A cell as a student finds it again: its first line of code."""
    line = next((x.strip() for x in source.splitlines() if x.strip() and not x.strip().startswith("#")), "")
    line = line[:60].replace("`", "'")
    return f"`{line}`" if line else "(empty)"


def _first_line(text: str) -> str:
    line = next((x for x in str(text).splitlines() if x.strip()), "")
    return line[:200]


def grade_notebook(path: Path, submission: str, limits: Limits, isolation: str,
                   scratch: Path | None = None) -> NotebookResult:
    """Grade one notebook (see the module's docstring); never raises for a bad notebook."""
    import io
    from contextlib import redirect_stdout

    import nbformat

    started = time.monotonic()
    result = NotebookResult(submission, Path(path).name, "")
    nb = None
    try:
        if Path(path).stat().st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"the file is {Path(path).stat().st_size / 2**20:.0f} MB, more than a "
                             f"notebook of this course can be ({MAX_NOTEBOOK_BYTES // 2**20} MB)")
        nb = nbformat.reads(Path(path).read_text(encoding="utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no cells")
    except Exception as err:  # noqa: BLE001 - any unreadable file is the submission's problem
        nb_error = f"the notebook could not be read ({type(err).__name__}: {_first_line(err)}): " \
                   "submit the .ipynb file that Jupyter or Colab saved (File > Download > .ipynb)"
        chapter = chapter_of(Path(path).name, None)
        result.chapter = str(chapter or "")
        exercises = exercises_of(chapter) if chapter else []
        result.exercises = [ExerciseResult(n, False, nb_error) for n, _, _ in exercises] or \
            [ExerciseResult("", False, nb_error)]
        result.notes.append(nb_error)
        return result
    chapter = chapter_of(Path(path).name, nb)
    exercises = exercises_of(chapter) if chapter else []
    result.chapter = str(chapter or "")
    if not exercises:
        why = ("could not tell which chapter this notebook is: keep the student edition's file name "
               "(chNN_...) or its title" if chapter is None else f"chapter {chapter} has no checked exercise")
        result.exercises = [ExerciseResult("", False, why)]
        result.notes.append(why)
        return result

    imports, cells = cells_to_run(nb)
    run_nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "grade", "display_name": "grader",
                                                                "language": "python"}})
    run_nb.cells = [nbformat.v4.new_code_cell(_PREAMBLE), nbformat.v4.new_code_cell(
        f"_grade_setup({limits.output_kb * 1024}, {_import_bindings(imports)!r})")]
    run_nb.cells += [nbformat.v4.new_code_cell(source) for _, source in cells]
    deadline = started + limits.notebook_s
    kernel = _Kernel(isolation, limits, Path(scratch or tempfile.gettempdir()))
    dead = ""
    try:
        try:
            kernel.start(run_nb)
        except Exception as err:  # noqa: BLE001 - nothing of the student's has run yet
            raise GraderError(f"could not start a kernel in the {isolation} sandbox ({type(err).__name__}: "
                              f"{_first_line(err)}); the kernel said:\n{kernel.log_tail()}") from err
        for i in range(len(run_nb.cells)):
            left = deadline - time.monotonic()
            if left <= 1:
                dead = f"the notebook ran out of its {limits.notebook_s:.0f} s before all its cells had run"
                break
            try:
                cell = kernel.run_cell(i, left)
            except Exception as err:  # noqa: BLE001 - DeadKernelError and friends
                if not kernel.alive():
                    dead = ("the kernel died while running your notebook's cells (a crash, or more "
                            f"memory than the {limits.memory_mb} MB allowed)")
                else:
                    dead = f"the grader could not run a cell ({type(err).__name__}: {_first_line(err)})"
                break
            if i < 2:
                errors = [o for o in cell.outputs if o.get("output_type") == "error"]
                if errors:
                    raise GraderError(f"the grader's own set-up failed in the kernel: {errors[0].get('ename')}: "
                                      f"{errors[0].get('evalue')}")
                continue
            for out in cell.outputs:
                if out.get("output_type") == "error":
                    number = _cell_name(cells[i - 2][1])
                    if out.get("ename") == "TimeoutError" and out.get("evalue") == "the cell ran out of time":
                        dead = (f"the cell {number} was still running when the notebook's "
                                f"{limits.notebook_s:.0f} s were up: look for a loop that never ends")
                    else:
                        result.notes.append(f"the cell {number} raised {out.get('ename')}: "
                                            f"{_first_line(out.get('evalue', ''))}")
            if dead:
                break
        if kernel.client is not None and kernel.client.output_cut:
            result.notes.append(f"the notebook printed more than {limits.output_kb} KB: the rest of its "
                                "output was dropped")
        if dead:
            result.notes.append(dead)
            result.exercises = [ExerciseResult(n, False, dead) for n, _, _ in exercises]
            return result
        from mnist_lessons import exercises as checks

        checks.TIME_LIMIT_S = limits.call_s
        for number, checker, name in exercises:
            t0 = time.monotonic()
            kind, value = _probe(kernel, name)
            if kind == "missing":
                hint = (f"`{name}` is not defined in the notebook: keep the cell that defines it (copy "
                        "it back from the student edition if it was deleted)")
                result.exercises.append(ExerciseResult(number, False, hint, [("the answer is defined", False, hint)]))
                continue
            if kind == "stuck":
                hint = "the kernel stopped answering before this exercise could be checked"
                result.exercises.append(ExerciseResult(number, False, hint))
                continue
            answer = KernelFunction(kernel, name, min(deadline, t0 + limits.exercise_s), limits.call_s) \
                if kind == "callable" else value
            with redirect_stdout(io.StringIO()):
                verdict = checker(answer)
            failed = [(case, hint) for case, ok, hint in verdict.results if not ok]
            result.exercises.append(ExerciseResult(
                number, verdict.passed, failed[0][1] if failed else "", list(verdict.results),
                time.monotonic() - t0))
        return result
    finally:
        kernel.stop()
        result.seconds = time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# A class


def _grade_one(job: tuple) -> NotebookResult:
    path, submission, limits, isolation, scratch = job
    try:
        return grade_notebook(Path(path), submission, limits, isolation, scratch)
    except GraderError:
        raise
    except Exception as err:  # noqa: BLE001 - one notebook never stops the class
        result = NotebookResult(submission, Path(path).name, "")
        why = f"the grader failed on this notebook ({type(err).__name__}: {_first_line(err)}); grade it by hand"
        result.exercises = [ExerciseResult("", False, why)]
        result.notes.append(why)
        return result


def _chapter_key(result: NotebookResult) -> tuple:
    return (int(result.chapter) if result.chapter.isdigit() else 999, result.file)


def grade_class(submissions: Path, out: Path, limits: Limits = Limits(), *, isolation: str = "auto",
                jobs: int = 2, log: Callable[[str], None] = print) -> list[dict[str, str]]:
    """Grade every submission in ``submissions``; write ``gradebook.csv`` and the feedback files
    under ``out``; return the gradebook's rows."""
    if isolation == "auto":
        isolation = "bwrap" if shutil.which("bwrap") else ""
        if not isolation:
            raise GraderError("bubblewrap (bwrap) is not installed, and the grader runs students' code only "
                              "in a sandbox: install it (Debian/Ubuntu: apt-get install bubblewrap), or run "
                              "the grader in a container and pass --isolation none there")
    if isolation not in ("bwrap", "none"):
        raise GraderError(f"--isolation must be auto, bwrap or none, got {isolation!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise GraderError(f"jobs must be a whole number of at least 1, got {jobs!r}")
    found = submissions_in(Path(submissions))
    out = Path(out)
    if out.resolve() == Path(submissions).resolve() or Path(submissions).resolve() in out.resolve().parents:
        raise GraderError("write the gradebook outside the submissions folder (--out elsewhere)")
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="mnist-grade-"))
    os.chmod(scratch, 0o755)
    jobs_list = [(str(nb), name, limits, isolation, str(scratch)) for name, notebooks, _ in found for nb in notebooks]
    started = time.monotonic()
    results: list[NotebookResult] = []
    try:
        if jobs == 1 or len(jobs_list) <= 1:
            results = [_grade_one(job) for job in jobs_list]
        else:
            import multiprocessing

            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(_grade_one, jobs_list))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    by_submission: dict[str, list[NotebookResult]] = {name: [] for name, _, _ in found}
    for result in results:
        by_submission[result.submission].append(result)
    rows: list[dict[str, str]] = []
    for name, notebooks, others in found:
        graded = sorted(by_submission[name], key=_chapter_key)
        if not notebooks:
            kinds = ", ".join(sorted({p.suffix or p.name for p in others}))
            rows.append({"submission": name, "chapter": "", "exercise": "", "passed": "no",
                         "hint": f"no notebook to grade (found {kinds}): submit the .ipynb files"})
        for result in graded:
            for ex in result.exercises:
                rows.append({"submission": name, "chapter": result.chapter, "exercise": ex.exercise,
                             "passed": "yes" if ex.passed else "no", "hint": ex.hint})
        (out / "feedback" / f"{_safe(name)}.md").write_text(feedback_markdown(name, graded, others, limits),
                                                              encoding="utf-8")
    with open(out / "gradebook.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=GRADEBOOK_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    log(f"graded {len(jobs_list)} notebooks of {len(found)} submissions in {time.monotonic() - started:.0f} s "
        f"({isolation} sandbox): {out / 'gradebook.csv'}, feedback in {out / 'feedback'}")
    return rows


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "submission"


def _text(text: str) -> str:
    """``text`` as Markdown that shows it as written: code spans (between backticks) stay code,
    everything else is escaped, so a student's code in a note cannot turn into markup."""
    from mnist_lessons.tools.editions import escape_markdown

    out = []
    for part in re.split(r"(`[^`\n]+`)", str(text)):
        out.append(part if part.startswith("`") and part.endswith("`") and len(part) > 1
                   else escape_markdown(part))
    return "".join(out)


def feedback_markdown(name: str, results: list[NotebookResult], others: list[Path], limits: Limits) -> str:
    """The feedback a student reads: each exercise, passed or not, each case with its hint,
    how long the check ran, and what happened in the notebook."""
    escape_markdown = _text

    lines = [f"# Feedback: {escape_markdown(name)}", ""]
    if not results:
        lines += ["No notebook was found in this submission, so nothing could be graded. "
                  "Submit the `.ipynb` files of the student edition."]
    total = sum(len(r.exercises) for r in results)
    passed = sum(ex.passed for r in results for ex in r.exercises)
    if results:
        lines += [f"{passed} of {total} checked exercises passed. Each notebook was run from top to bottom "
                  f"in a fresh kernel (its exercise section, after the chapter's imports), as the grader "
                  f"runs every notebook; then each exercise's check was run on your function.", ""]
    for result in results:
        title = f"Chapter {result.chapter}" if result.chapter else "Notebook"
        lines += [f"## {title}: `{result.file}`", ""]
        for ex in result.exercises:
            mark = "passed" if ex.passed else "not passed"
            head = f"### Exercise {ex.exercise}: {mark}" if ex.exercise else f"### {mark.capitalize()}"
            lines += [head, ""]
            if ex.cases:
                lines += [f"- {'✓' if ok else '✗'} {escape_markdown(case)}"
                          + ("" if ok else f"  \n  hint: {escape_markdown(hint)}") for case, ok, hint in ex.cases]
                lines += ["", f"The check ran for {ex.seconds:.1f} s (limit {limits.exercise_s:.0f} s; "
                          f"{limits.call_s:.0f} s for each call of your function).", ""]
            elif ex.hint:
                lines += [escape_markdown(ex.hint), ""]
        if result.notes:
            lines += ["What happened in the notebook:", ""]
            lines += [f"- {escape_markdown(n)}" for n in result.notes] + [""]
        lines += [f"The notebook took {result.seconds:.1f} s to grade (limit {limits.notebook_s:.0f} s).", ""]
    if others and results:
        lines += ["Not graded (not notebooks): " + ", ".join(f"`{p.name}`" for p in others), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    defaults = Limits()
    parser = argparse.ArgumentParser(
        description="Grade a folder of submitted student-edition notebooks with the book's checkers, each in a "
                    "fresh sandboxed kernel; write gradebook.csv and one feedback file per submission.")
    parser.add_argument("submissions", help="folder with one sub-folder (or one notebook) per student")
    parser.add_argument("--out", required=True, help="where to write gradebook.csv and feedback/")
    parser.add_argument("--notebook-time", type=float, default=defaults.notebook_s,
                        help="seconds for one notebook, from kernel start to last check (default: %(default)s)")
    parser.add_argument("--exercise-time", type=float, default=defaults.exercise_s,
                        help="seconds for one exercise's check (default: %(default)s)")
    parser.add_argument("--call-time", type=float, default=defaults.call_s,
                        help="seconds for one call of a student's function (default: %(default)s)")
    parser.add_argument("--memory", type=int, default=defaults.memory_mb,
                        help="MB of address space for a kernel (default: %(default)s)")
    parser.add_argument("--output", type=int, default=defaults.output_kb,
                        help="KB of output kept from a notebook (default: %(default)s)")
    parser.add_argument("--file-size", type=int, default=defaults.file_mb,
                        help="MB for any file a notebook writes (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks graded at once (default: %(default)s)")
    parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "none"),
                        help="auto: bubblewrap, required; none: no sandbox, only inside a container")
    args = parser.parse_args(argv)
    try:
        limits = Limits(args.notebook_time, args.exercise_time, args.call_time, args.memory, args.output,
                        args.file_size)
        grade_class(Path(args.submissions), Path(args.out), limits, isolation=args.isolation, jobs=args.jobs)
    except GraderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
