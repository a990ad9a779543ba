"""Exercises in every chapter: three kinds, hidden solutions, and solutions that pass their checks.

How the editions are made (MyST to Markdown, solutions removed or folded) is tested in
tests/test_editions.py; the student edition is run as a student would run it, in a Colab-like
runtime where it fails only in the unfinished exercises, in tests/test_colab.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons import exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("ch*.ipynb"))


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_has_three_kinds_of_exercise_with_hidden_solutions(nb):
    text = "\n".join(c.source for c in _cells(nb) if c.cell_type == "markdown")
    assert len(re.findall(r"```\{exercise\}", text)) >= 3
    assert "Predict, then run" in text and "Discuss" in text
    starts = re.findall(r"```\{solution-start\}[^\n]*\n:class: dropdown", text)
    assert len(starts) == len(re.findall(r"```\{exercise\}", text)) == text.count("{solution-end}")
    checks = [c for c in _cells(nb) if c.cell_type == "code" and re.search(r"^check_\w+\(", c.source, re.M)]
    assert checks, "at least one exercise is checked automatically"
    assert "In this chapter you will" in text and "## Summary" in text
    for line in text.splitlines():  # a backtick in a fence's info line breaks the directive
        if line.startswith("```{"):
            assert "`" not in line[3:], line


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_solutions_in_the_book_pass_their_checkers(nb, capsys):
    cells = _cells(nb)
    checked = 0
    for i, cell in enumerate(cells):
        call = re.search(r"^(check_\w+)\((\w+)\)", cell.source, re.M) if cell.cell_type == "code" else None
        if not call:
            continue
        solution = next(c for c in reversed(cells[:i]) if "solution" in c.metadata.get("tags", []))
        namespace = {"np": np, "tf": tf}
        exec(compile(solution.source, f"{nb.name} solution", "exec"), namespace)
        verdict = getattr(exercises, call.group(1))(namespace[call.group(2)])
        assert verdict.passed, capsys.readouterr().out
        checked += 1
    assert checked >= 1


def test_every_checker_is_used_in_a_chapter():
    used = {m for nb in NOTEBOOKS for c in _cells(nb) for m in re.findall(r"check_\w+", c.source)}
    assert {fn.__name__ for fn in exercises.CHECKERS.values()} <= used
