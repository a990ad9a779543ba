"""mnist_lessons.tools.glue: numbers into the prose, in the book and outside it."""

from __future__ import annotations

import sys

import pytest

from mnist_lessons.tools.glue import glue


def test_glue_records_the_value_with_myst_nb(monkeypatch):
    recorded = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: recorded.append((name, value)))
    assert glue("ch0_answer", 42) is None  # nothing to echo at the end of a cell
    assert recorded == [("ch0_answer", 42)]


def test_glue_works_without_myst_nb_as_in_colab(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import now raises ImportError
    glue("ch0_answer", 3.5)
    assert capsys.readouterr().out == ""
    glue("ch0_shown", "hello", display=True)
    assert "hello" in capsys.readouterr().out


def test_glue_names_must_be_identifiers():
    with pytest.raises(ValueError, match="identifiers"):
        glue("not a name", 1)
