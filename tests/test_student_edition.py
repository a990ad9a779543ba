"""Exercises in every chapter, and the student and instructor editions made from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons import exercises
from mnist_lessons.tools.student_edition import (
    STUB_TAG,
    _split_markdown,
    main,
    stub_for,
    write_editions,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("ch*.ipynb"))


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


def _solution_texts(path: Path) -> list[str]:
    """Every line of solution text in a book notebook (code and prose), for leak checks."""
    lines, inside = [], False
    for cell in _cells(path):
        if cell.cell_type == "markdown":
            pieces, inside = _split_markdown(cell.source, inside)
            lines += [ln for piece, within in pieces if within for ln in piece.splitlines()]
        elif "solution" in cell.metadata.get("tags", []):
            lines += [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("def ", "@"))]
    return [ln.strip() for ln in lines if len(ln.strip()) > 12]


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    out = tmp_path_factory.mktemp("editions")
    write_editions(ROOT / "book", out)
    return out


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


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_contains_no_solution_text(nb, editions):
    student = (editions / "student" / nb.name).read_text()
    instructor = (editions / "instructor" / nb.name).read_text()
    texts = _solution_texts(nb)
    assert texts, "the chapter has solutions"
    for line in texts:
        assert json.dumps(line)[1:-1] in instructor, f"instructor edition lost: {line}"
        assert json.dumps(line)[1:-1] not in student, f"student edition leaks: {line}"
    assert "{solution-start}" not in student and "{exercise}" not in student
    assert "**Exercise" in student and "raise NotImplementedError" in student


def test_stubs_keep_signatures_and_docstrings_only():
    source = 'def f(x, y=2, *, z):\n    """Add."""\n    return x + y\n\n\ndef g(a):\n    return a\n'
    stub = stub_for(source)
    assert 'def f(x, y=2, *, z):\n    """Add."""\n    # your code here\n    raise NotImplementedError' in stub
    assert "def g(a):" in stub and "return" not in stub
    assert stub_for("print(1 + 1)") == "# your code here\nraise NotImplementedError"


def test_command_writes_both_editions(tmp_path, capsys):
    assert main(["--book", str(ROOT / "book"), "--out", str(tmp_path)]) == 0
    assert f"student    {len(NOTEBOOKS)} notebooks" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "instructor").iterdir()) == [p.name for p in NOTEBOOKS]


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebooks_run_and_fail_only_in_the_unfinished_exercises(nb, editions):
    from nbclient import NotebookClient

    student = nbformat.read(editions / "student" / nb.name, as_version=4)
    NotebookClient(student, timeout=1800, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if STUB_TAG in cell.metadata.get("tags", []):
            if "raise NotImplementedError" in cell.source and "def " not in cell.source:
                assert [e.ename for e in errors] == ["NotImplementedError"]
            else:
                assert not errors
        else:
            assert not errors, f"{nb.name}: {cell.source[:80]} -> {errors[0].ename if errors else ''}"
        if re.search(r"^check_\w+\(", cell.source, re.M):
            text = "".join(o.get("text", "") for o in cell.outputs)
            assert "not done yet" in text, text
