"""Sphinx extension: the live panel's weights, exported from the shipped course model at build time.

The page "Inside the network, live" (book/live_network.md) runs the course network in the
reader's browser (book/_static/live/live.js). Its weights are not committed: when an HTML build
starts, this runs ``python -m mnist_lessons.tools.web_model --out DIR`` (int4 FC layer, manifest,
accuracies measured on the test set, a static figure) and puts ``DIR`` and ``book/_static`` on
``html_static_path``, so the files land in ``_build/html/_static/live/``.

The export takes about half a minute (it measures three test accuracies), so it runs in a
process of its own while the build goes on (the pages execute meanwhile), and it is cached under
``<build>/.live_panel/<key>/``, where the key is the SHA-256 of ``course_model.npz`` and of the
exporter's source: a new course model or a changed exporter exports again, anything else reuses
the files. An export that fails stops the build with the exporter's message.

The page quotes the manifest's figures (sizes, accuracies): each ``%%live:<name>%%`` in its
source is replaced, as the source is read, by the measured value (:data:`FIGURES`), so no
number on the page is typed by hand; the page is read again on every build, so the figures
always match the exported weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
BOOK = Path(__file__).resolve().parents[1]
ROOT = BOOK.parent
NPZ = ROOT / "mnist_lessons" / "course_model.npz"
EXPORTER = ROOT / "mnist_lessons" / "tools" / "web_model.py"
PAGE = "book/live_network"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


#: The figures the page may quote, computed from the manifest (model.json).
FIGURES = {
    **{f"accuracy_{k}": (lambda m, k=k: _pct(m["test_accuracy"][k]))
       for k in ("float32", "float16", "int8", "int4")},
    **{f"fc_mb_{k}": (lambda m, k=k: f"{m['fc_bytes'][k] / 1e6:.1f}")
       for k in ("float32", "float16", "int8", "int4")},
    **{f"changed_{k}": (lambda m, k=k: f"{m['predictions_changed'][k]}")
       for k in ("float16", "int8", "int4")},
    **{f"max_logit_change_{k}": (lambda m, k=k: f"{m['max_logit_change'][k]:.3f}")
       for k in ("float16", "int8", "int4")},
    "binary_mb": lambda m: f"{m['binary_bytes'] / 1e6:.1f}",
    "trained_precision": lambda m: m["trained_precision"],
}


def cache_key() -> str:
    """16 hex digits of SHA-256 over the course model's bytes and the exporter's source."""
    digest = hashlib.sha256(NPZ.read_bytes())
    digest.update(EXPORTER.read_bytes())
    return digest.hexdigest()[:16]


_EXPORT: dict = {}  # the export under way: its process, log, partial and target folders


def start_export(cache_root: Path) -> Path:
    """Start exporting the current course model into ``cache_root/<key>`` unless it is already
    there, in a process of its own, so that the build goes on meanwhile (the pages execute);
    :func:`finish_export` waits for it. Returns the folder the export is (or will be) in."""
    target = cache_root / cache_key()
    if (target / "live" / "model.json").is_file():
        LOGGER.info(f"live panel: weights from the cache {target}")
        return target
    partial = cache_root / f".partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    LOGGER.info("live panel: exporting the course model for the browser (about 30 s, while the "
                "build goes on)")
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by finish_export
    process = subprocess.Popen([sys.executable, "-m", "mnist_lessons.tools.web_model", "--out",
                                str(partial / "live")], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    _EXPORT.update(process=process, log=log, partial=partial, target=target, root=cache_root)
    return target


def finish_export() -> None:
    """Wait for the export :func:`start_export` started, if any, and put it in place (keeping
    only the current one); an export that failed stops the build with its message."""
    process = _EXPORT.pop("process", None)
    if process is None:
        return
    process.wait()
    log = _EXPORT["log"]
    log.seek(0)
    output = log.read()
    log.close()
    if process.returncode != 0:
        raise ExtensionError("live panel: python -m mnist_lessons.tools.web_model failed:\n"
                             + output[-3000:])
    target, partial = _EXPORT["target"], _EXPORT["partial"]
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    for old in _EXPORT["root"].iterdir():  # keep only the current export
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def _export_for_html(app) -> None:
    if app.builder.format != "html":
        return
    folder = start_export(Path(app.outdir).parent / ".live_panel")
    app.config.html_static_path = [*app.config.html_static_path, str(BOOK / "_static"), str(folder)]
    app.env.live_panel_folder = str(folder)


def _manifest(app) -> dict | None:
    """The export's manifest (model.json), once the export has finished; None without one."""
    folder = getattr(app.env, "live_panel_folder", None)
    if folder is None:
        return None
    finish_export()
    return json.loads((Path(folder) / "live" / "model.json").read_text())


def _export_done(app, env) -> None:
    """The pages are read: the export must be in place before the static files are copied."""
    if getattr(env, "live_panel_folder", None) is not None:
        finish_export()


def _quote_figures(app, docname: str, source: list[str]) -> None:
    if docname != PAGE:
        return
    manifest = _manifest(app)
    text = source[0]
    for name, figure in FIGURES.items():
        token = f"%%live:{name}%%"
        if token in text:
            if manifest is None:
                raise ExtensionError(f"live panel: {PAGE} quotes {token} but no export ran "
                                     "(only HTML builds export the weights)")
            text = text.replace(token, figure(manifest))
    if "%%live:" in text:
        unknown = text[text.index("%%live:"):].split("%%")[1]
        LOGGER.warning(f"{PAGE}: unknown figure %%{unknown}%% (known: {', '.join(FIGURES)})")
    source[0] = text


def _always_reread_the_page(app, env, added, changed, removed):
    """The page's figures come from the export, not from its source: read it again on every
    build, or an incremental build would keep the figures of an older course model."""
    return [PAGE] if PAGE in env.found_docs else []


def setup(app):
    app.connect("builder-inited", _export_for_html)
    app.connect("env-updated", _export_done)
    app.connect("env-get-outdated", _always_reread_the_page)
    app.connect("source-read", _quote_figures)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
