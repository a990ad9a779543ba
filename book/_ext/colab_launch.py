"""Sphinx extension: the Colab launch button opens the reader edition, not the source notebook.

sphinx-book-theme builds the Colab button's address from the repository's branch
(``repository.branch`` in ``_config.yml``, ``main``), which holds the notebooks as committed:
no outputs, and MyST that Colab shows as raw markup. The Pages workflow
(``.github/workflows/book.yml``) publishes the reader edition of every page, with outputs and
Markdown that Colab renders, to the branch ``colab_launch_branch`` (``colab``) at the same paths
(``book/chXX.ipynb``). This rewrites the branch in the Colab button of each page, after the theme
has made it, and leaves everything else that reads ``repository.branch`` as it is (the repository
and edit buttons, and the set-up cell of the source notebooks, which installs from ``main``).

Pages written in MyST Markdown with code cells (``instructors.md``) get a launch button from the
theme too, but the branch holds notebooks only, and Colab opens no ``.md`` file: their Colab
button is removed (and the launch menu with it when nothing else is left in it).

A Colab button whose address is not the theme's expected
``<colab_url>/github/<org>/<repo>/blob/<branch>/...`` is a warning (an error under ``-W``), so
a theme update that changes it cannot silently send readers back to the source notebooks.
The browser test ``test_colab_button_opens_this_chapters_notebook`` checks the result.
"""

from __future__ import annotations

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)


def _colab_buttons(context):
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group.get("buttons", []):
                if button.get("text") == "Colab" and button.get("type") == "link":
                    yield button


def _drop_colab_buttons(context) -> None:
    groups = context.get("header_buttons", [])
    for group in groups:
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group.get("buttons", [])
                                if not (b.get("text") == "Colab" and b.get("type") == "link")]
    context["header_buttons"] = [g for g in groups
                                 if g.get("label") != "launch-buttons" or g.get("buttons")]


def _point_colab_to_the_reader_edition(app, pagename, templatename, context, doctree):
    target = app.config.colab_launch_branch
    if not target:
        return
    if pagename in app.env.all_docs and not str(app.env.doc2path(pagename)).endswith(".ipynb"):
        _drop_colab_buttons(context)  # no reader edition of a Markdown page: nothing to open
        return
    options = app.config.html_theme_options
    branch = options.get("repository_branch") or "master"
    colab_url = options.get("launch_buttons", {}).get("colab_url", "").strip("/")
    marker = "/blob/"
    for button in _colab_buttons(context):
        url = button["url"]
        head, sep, tail = url.partition(marker)
        if not (url.startswith(f"{colab_url}/github/") and sep and tail.startswith(f"{branch}/")):
            LOGGER.warning(f"{pagename}: unexpected Colab launch URL {url!r}; it was not pointed at "
                           f"the {target!r} branch (see book/_ext/colab_launch.py)")
            continue
        button["url"] = f"{head}{marker}{target}/{tail[len(branch) + 1:]}"


def setup(app):
    app.add_config_value("colab_launch_branch", "colab", "html")
    # after sphinx-book-theme's add_launch_buttons (priority 501) has made the buttons
    app.connect("html-page-context", _point_colab_to_the_reader_edition, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
