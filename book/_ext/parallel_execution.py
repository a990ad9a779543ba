"""Sphinx extension: execute the book's notebooks side by side, before Sphinx reads them.

myst-nb executes a notebook when Sphinx reads its page, one page after the other. Most of a
page's time is one busy core (starting a kernel, importing TensorFlow, drawing figures, the
from-scratch NumPy code), so on a machine with several cores the pages can run side by side.

When Sphinx is about to read pages (``env-before-read-docs``), this extension runs every
``.ipynb`` page among them in a pool of worker processes (one per core, or
``parallel_execution_jobs``; the longest pages first), each exactly as myst-nb runs one (jupyter-cache's
``single_nb_execution``: the page's own folder as working directory, the configured timeout,
errors not allowed), and stores the executed notebooks in the jupyter-cache that myst-nb's
``cache`` mode then reads them from.

- Nothing from an earlier build is reused: the cache is emptied first, so every page Sphinx
  reads is executed by this build (the ``--all`` of ``make book`` reads every page), which is
  what ``execute_notebooks: force`` would do, only side by side.
- A page that fails here is not stored: myst-nb then executes it again itself and reports the
  error with its traceback, as it always does (``-W`` fails the build).
- A page that loads models another page trains waits for that page
  (``parallel_execution_after`` in ``_config.yml``), so each model is trained once. Were two
  such pages to run at once, the model cache writes each file atomically
  (``mnist_lessons.checkpoints``): the worst case is training a model twice.
- Other pages (MyST Markdown notebooks) are left to myst-nb.
- Each executed notebook is also written to ``jupyter_execute/``, as ``force`` mode writes it
  (myst-nb 1.4's ``cache`` mode writes the notebook there without its outputs).

It does nothing unless ``execute_notebooks`` is ``cache`` (``_config.yml``).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _execute(path: str, timeout: int | None, allow_errors: bool):
    """Run one notebook as myst-nb would (in a worker process): (path, executed notebook or
    None when it failed, seconds)."""
    import tempfile

    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    # The kernel talks to its client over Unix sockets in a folder of its own, not TCP ports:
    # processes that start kernels at the same moment (the other workers, a test run beside
    # the build) can pick the same free port, and a kernel then waits for a client that never
    # hears it (seen: a build that hung).
    with tempfile.TemporaryDirectory(prefix="mnist-lessons-kernel-") as sockets:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets, "kernel"))}})
        result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                     allow_errors=allow_errors, meta_override=True, config=config)
    return path, (nb if result.err is None else None), result.time


def _execute_side_by_side(app, env, docnames) -> None:
    config = env.mystnb_config  # myst-nb's own settings, its cache path resolved
    if config.execution_mode != "cache" or config.execution_in_temp:
        return
    paths = [str(env.doc2path(name)) for name in docnames]
    from mnist_lessons.tools.run_times import recorded_seconds

    # the longest pages first (their recorded run times), so that the pool ends sooner
    paths = sorted((p for p in paths if p.endswith(".ipynb")), key=lambda p: -recorded_seconds(Path(p).stem))
    if not paths:
        return
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache_path = Path(config.execution_cache_path)
    shutil.rmtree(cache_path, ignore_errors=True)  # every page is executed by this build
    cache = get_cache(str(cache_path))
    jobs = min(len(paths), app.config.parallel_execution_jobs or _cores())
    # A page named in parallel_execution_after waits for the pages it names (those among the
    # pages to execute): it loads models they train, which would otherwise be trained twice.
    names = {path: env.path2doc(path) for path in paths}
    after = {path: {p for p in paths if names[p] in app.config.parallel_execution_after.get(names[path], ())}
             for path in paths}
    logger.info(f"[parallel_execution] executing {len(paths)} notebooks, {jobs} at a time")
    start = time.perf_counter()
    waiting, done, running = list(paths), set(), {}
    # spawn, not fork: a forked copy of Sphinx's process is not what a kernel client expects
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        while waiting or running:
            for path in [p for p in waiting if after[p] <= done][:jobs - len(running)]:
                waiting.remove(path)
                running[pool.submit(_execute, path, config.execution_timeout,
                                    config.execution_allow_errors)] = path
            if not running:  # only pages that wait for each other can be left waiting
                raise RuntimeError(f"parallel_execution_after: {waiting} wait for each other")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done.add(running.pop(future))
                path, nb, seconds = future.result()
                name = Path(path).name
                if nb is None:
                    logger.info(f"[parallel_execution] {name} failed after {seconds:.1f} s: "
                                "myst-nb runs it again and reports the error")
                    continue
                cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={"execution_seconds": seconds}),
                                            check_validity=False, overwrite=True)
                app.parallel_executed[names[path]] = nb
                logger.info(f"[parallel_execution] {name}: {seconds:.1f} s")
    logger.info(f"[parallel_execution] {len(paths)} notebooks in "
                f"{time.perf_counter() - start:.1f} s of wall time")


def _write_the_executed_notebook(app, doctree) -> None:
    """Write the page's executed notebook to ``jupyter_execute/`` (what the download button
    serves and the editions are made from). myst-nb 1.4 in ``cache`` mode writes the notebook
    as read, without its outputs; in ``force`` mode it writes the executed one, as this does."""
    import nbformat
    from myst_nb.ext.glue import extract_glue_data_cell

    nb = app.parallel_executed.pop(app.env.docname, None)
    if nb is None:
        return
    for cell in nb.cells:  # what rendering does to the notebook force mode writes: glue
        if cell.cell_type == "code":  # outputs leave the cell (they are in <page>.glue.json)
            extract_glue_data_cell(cell)
    target = Path(app.env.mystnb_config.output_folder, *app.env.docname.split("/")).with_suffix(".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(nbformat.writes(nb), encoding="utf8")


def setup(app):
    app.parallel_executed = {}  # docname -> the notebook executed here, until written
    app.add_config_value("parallel_execution_jobs", 0, "env")  # 0: one per core
    app.add_config_value("parallel_execution_after", {}, "env")  # docname -> [docnames]
    app.connect("env-before-read-docs", _execute_side_by_side)
    app.connect("doctree-read", _write_the_executed_notebook)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
