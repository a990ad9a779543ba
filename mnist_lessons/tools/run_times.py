"""How long each page of the book takes to run: measured, recorded, and stated in the page.

Every chapter says near its top how long it takes to run from top to bottom, so a student knows
whether to wait or to switch on a GPU runtime. Those figures are never typed by hand: the
command below executes every page in a fresh kernel, times it, and writes ``run_times.json``
(shipped inside the package, so Colab sees it too)::

    python -m mnist_lessons.tools.run_times record

It runs each page twice with the course's full settings: first with an empty model cache, as on
a fresh Colab runtime, where a page trains the networks of its own comparisons (the course
network ships with the package and is loaded, not trained); then again with the cache that
first run left, where those networks are loaded too.
Run on a CPU machine it records the ``cpu`` entry; on a GPU machine, the ``gpu`` entry. An entry
that was never measured stays ``null`` and the page says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import settings

RUN_TIMES_FILE = Path(__file__).with_name("run_times.json")
DEVICE_KINDS = ("cpu", "gpu")
# What each kind means for a reader; the entry's ``device`` field says which machine measured it.
DEVICE_LABELS = {"cpu": "on a CPU", "gpu": "on a GPU"}


def format_seconds(seconds: float) -> str:
    """A duration as a reader says it: ``"4 s"``, ``"2 min 39 s"``, ``"1 h 3 min"``.

    Args:
        seconds: a non-negative number of seconds.
    """
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise ValueError(f"seconds must be a non-negative number, got {seconds!r}")
    total = round(seconds)
    if total < 60:
        return f"{max(total, 1)} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def load_run_times(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The recorded run times: ``{"cpu": entry or None, "gpu": entry or None}``.

    An entry is ``{"device": str, "date": "YYYY-MM-DD", "profile": "full",
    "pages": {page: {"first": seconds, "later": seconds}}}``, where ``page`` is a notebook's
    name without ``.ipynb`` (``"ch06_the_convolutional_layer"``).

    Raises:
        ValueError: the file is not a run-times record (the message says how to remake it).
    """
    path = Path(path) if path is not None else RUN_TIMES_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read run times from {path} ({err}); remake the file with "
                         "`python -m mnist_lessons.tools.run_times record`") from None
    if not isinstance(record, dict) or set(record) != set(DEVICE_KINDS):
        raise ValueError(f"{path} must have exactly the keys {DEVICE_KINDS}; remake it with "
                         "`python -m mnist_lessons.tools.run_times record`")
    return record


def recorded_seconds(page: str) -> float:
    """The page's recorded CPU run time in a fresh runtime (``first``), or 0.0 when none is
    recorded or the record cannot be read: an order hint for running the longest pages first."""
    try:
        return float(load_run_times()["cpu"]["pages"][page]["first"])
    except (KeyError, TypeError, ValueError):
        return 0.0


def describe_run_time(page: str, times: dict[str, Any] | None = None) -> str:
    """One Markdown sentence per device kind saying how long ``page`` takes to run.

    Args:
        page: the notebook's name without ``.ipynb``, e.g. ``"ch06_the_convolutional_layer"``.
        times: a record as returned by :func:`load_run_times` (default: the shipped one).

    Returns:
        For example ``"**Time to run this page:** about 6 s on a CPU once the trained
        networks are cached, 2 min 36 s on a fresh runtime, which trains them (measured on a
        2-core CPU with bfloat16 units, 2026-11-25). On a GPU: not measured yet for this
        edition."`` A page whose two runs take about as long states one time.
    """
    times = load_run_times() if times is None else times
    parts = []
    for kind in DEVICE_KINDS:
        entry = times.get(kind)
        label = DEVICE_LABELS[kind]
        if not entry:
            parts.append(f"{label[0].upper()}{label[1:]}: not measured yet for this edition.")
            continue
        if page not in entry["pages"]:
            raise KeyError(f"no run time recorded for page {page!r}; record it with "
                           "`python -m mnist_lessons.tools.run_times record`")
        first, later = entry["pages"][page]["first"], entry["pages"][page]["later"]
        where = f"measured on {entry['device']}, {entry['date']}"
        if abs(first - later) < max(5.0, 0.25 * later):
            parts.append(f"about {format_seconds(later)} {label} ({where}).")
        else:
            parts.append(f"about {format_seconds(later)} {label} once the trained networks are "
                         f"cached, {format_seconds(first)} on a fresh runtime, which trains "
                         f"them ({where}).")
    sentence = " ".join(parts)
    return f"**Time to run this page:** {sentence[0].lower()}{sentence[1:]}"


def show_run_time(page: str) -> None:
    """Display :func:`describe_run_time` as Markdown in a notebook (returns nothing)."""
    from IPython.display import Markdown, display

    display(Markdown(describe_run_time(page)))


def run_times_table(pages: dict[str, str], times: dict[str, Any] | None = None) -> str:
    """A Markdown table of run times, one row per page, for the instructors' page, followed by
    one line per device kind saying which machine measured it and when.

    Args:
        pages: page name -> title shown in the row, in the order of the rows.
        times: a record as returned by :func:`load_run_times` (default: the shipped one).
    """
    times = load_run_times() if times is None else times
    header, rule, cells = ["Page"], ["---"], {page: [title] for page, title in pages.items()}
    for kind in DEVICE_KINDS:
        entry = times.get(kind)
        label = DEVICE_LABELS[kind].removeprefix("on a ")
        header += [f"{label}, cached", f"{label}, fresh runtime"]
        rule += ["--:", "--:"]
        for page in pages:
            measured = (entry or {}).get("pages", {}).get(page)
            cells[page] += ([format_seconds(measured["later"]), format_seconds(measured["first"])]
                            if measured else ["not measured", "not measured"])
    rows = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    rows += ["| " + " | ".join(row) + " |" for row in cells.values()]
    rows.append("")
    for kind in DEVICE_KINDS:
        entry = times.get(kind)
        rows.append(f"- {kind.upper()}: measured on {entry['device']}, {entry['date']}." if entry
                    else f"- {kind.upper()}: not measured yet for this edition.")
    return "\n".join(rows)


def page_titles(book_dir: str | os.PathLike) -> dict[str, str]:
    """Page name -> title (its first heading) of every notebook in ``book_dir``.

    Chapters come first, in their order (``ch01_...`` to ``ch11_...``), then the other pages.
    """
    import nbformat

    notebooks = sorted(Path(book_dir).glob("*.ipynb"),
                       key=lambda p: (not p.stem.startswith("ch"), p.stem))
    titles = {}
    for nb in notebooks:
        first = nbformat.read(nb, as_version=4).cells[0].source.splitlines()[0]
        titles[nb.stem] = first.lstrip("# ").strip()
    return titles


def time_notebook(path: str | os.PathLike, env: dict[str, str], timeout: int = 3600) -> float:
    """Execute a notebook top to bottom in a fresh kernel; return the wall time in seconds.

    The kernel starts in the notebook's folder with ``env`` added to its environment; the time
    includes starting the kernel, as "Run all" in a fresh runtime does.

    Raises:
        RuntimeError: a cell failed (the message names the notebook).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute(env={**os.environ, **env})
    except CellExecutionError as err:
        raise RuntimeError(f"{path.name} failed while being timed:\n{err}") from None
    return time.perf_counter() - start


def describe_this_machine() -> tuple[str, str]:
    """``(kind, description)`` of this machine: ``("gpu", "an NVIDIA H100 (...)")`` or
    ``("cpu", "a 2-core CPU with bfloat16 units")``."""
    import tensorflow as tf

    from ..runtime import has_fast_bfloat16

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return "gpu", f"an {name}" if name[:1].upper() in "AEIOU" else f"a {name}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    units = "with" if has_fast_bfloat16() else "without"
    return "cpu", f"a {cores}-core CPU {units} bfloat16 units"


def record_run_times(notebooks: list[Path], out: Path = RUN_TIMES_FILE,
                     log=print) -> dict[str, Any]:
    """Time every notebook twice (fresh model cache, then cached) and write the record.

    Each notebook gets a model cache of its own, empty for the first run, so every "fresh
    runtime" figure includes the training that page triggers. MNIST itself comes from the
    course cache, which the set-up prepared; the course's full settings are used.
    """
    kind, device = describe_this_machine()
    data = settings().cache_dir / "mnist.npz"
    if not data.exists():
        raise RuntimeError(f"{data} is missing: run `python -m mnist_lessons.data` first")
    pages: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mnist-run-times-") as scratch:
        for nb in notebooks:
            cache = Path(scratch) / nb.stem
            cache.mkdir()
            shutil.copy2(data, cache / "mnist.npz")
            env = {"MNIST_LESSONS_CACHE": str(cache), "MNIST_LESSONS_PROFILE": "full"}
            first = time_notebook(nb, env)
            later = time_notebook(nb, env)
            pages[nb.stem] = {"first": round(first, 1), "later": round(later, 1)}
            log(f"{nb.stem:40s} fresh {format_seconds(first):>10s}   cached "
                f"{format_seconds(later):>10s}")
    record = load_run_times(out) if out.exists() else dict.fromkeys(DEVICE_KINDS)
    if record[kind] and record[kind]["device"] == device:  # timing some pages again
        pages = {**record[kind]["pages"], **pages}
    record[kind] = {"device": device, "date": dt.date.today().isoformat(), "profile": "full",
                    "pages": pages}
    out.write_text(json.dumps(record, indent=2) + "\n")
    log(f"wrote the {kind} entry of {out}")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnist_lessons.tools.run_times",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="time every page of the book and write run_times.json")
    rec.add_argument("notebooks", nargs="*", type=Path,
                     help="notebooks to time (default: every notebook in book/)")
    rec.add_argument("--out", type=Path, default=RUN_TIMES_FILE)
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(Path("book").glob("*.ipynb"))
    if not notebooks:
        parser.error("no notebooks found: run from the repository root or name them")
    record_run_times(notebooks, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
