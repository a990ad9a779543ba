"""Sphinx extension: keep one copy of each inline script that sphinx-thebe adds.

With Jupyter Book 1.0.4, sphinx-thebe 0.3.1 registers its inline configuration
(``const THEBE_JS_URL = ...``) twice, and a browser then stops with "Identifier 'THEBE_JS_URL'
has already been declared" on every page. This removes exact duplicates of inline scripts
from each page as it is written. The browser test (tests/test_browser.py) checks pages stay clean.
"""

from __future__ import annotations


def _drop_duplicate_inline_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        body = getattr(script, "attributes", {}).get("body")
        if body is not None and body in seen:
            continue
        if body is not None:
            seen.add(body)
        unique.append(script)
    context["script_files"] = unique


def setup(app):
    # late, so every extension has added its scripts to the page before we look
    app.connect("html-page-context", _drop_duplicate_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
