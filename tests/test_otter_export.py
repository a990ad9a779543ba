"""The otter-grader export: otter itself, installed for real, grades the exported assignment as
the book's own grader does.

The export's master notebook is made from the book's chapter; ``otter assign`` (otter's own
command) turns it into the student notebook and the autograder zip. Submissions are made from
otter's student notebook, each graded by ``otter run`` (otter's command, in a subprocess) and
by ``python -m mnist_lessons.tools.grade``: the two must agree on every verdict, and otter's
failure message must carry the hint the book's grader wrote.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from mnist_lessons.tools.grade import Limits, grade_class
from mnist_lessons.tools.otter_export import export, solution_with_markers

ROOT = Path(__file__).resolve().parents[1]
OTTER = Path(sys.executable).with_name("otter")

ANSWERS = {  # chapter 5's exercise, three ways
    "correct": '''def conv_output_size(size, kernel, stride, padding):
    import math
    if padding == "SAME":
        return math.ceil(size / stride)
    return len(range(0, size - kernel + 1, stride))''',
    "off_by_one": '''def conv_output_size(size, kernel, stride, padding):
    if padding == "SAME":
        return -(-size // stride)
    return (size - kernel) // stride''',
    "stub": None,
}
# One wrong answer is enough here: otter reports every failed check the same way (the checker's
# verdict, its hint in an AssertionError), whatever the mistake was; an answer that raises, and
# the other kinds of mistake, are graded in tests/test_grading.py. Each otter run executes the
# whole chapter, TensorFlow included: chapter 5, one of the quickest pages (about 8 s of CPU
# each, where chapter 7 took about 17).


def test_the_solution_gets_otter_markers_around_its_body_and_the_book_stub_after():
    source = 'def f(x):\n    """Doc."""\n    y = x + 1\n    return y\n'
    assert solution_with_markers(source) == (
        'def f(x):\n    """Doc."""\n    # BEGIN SOLUTION NO PROMPT\n    y = x + 1\n    return y\n'
        "    # END SOLUTION\n    # your code here\n    raise NotImplementedError")


def test_exporting_a_chapter_that_is_not_in_the_book_says_which_are(tmp_path):
    with pytest.raises(ValueError, match=r"no chapter 42 in the book; chapters are \[1, 2, 3"):
        export(tmp_path, [42], ROOT / "book", run_otter=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("otter")
    # Without otter assign's own run of the solution: otter run grades a right answer below.
    (folder,) = export(out, [5], ROOT / "book", run_tests=False)
    return folder


def test_otter_assign_gives_the_book_s_stub_and_keeps_the_solution_out(exported):
    student = nbformat.read(exported / "dist" / "student" / "ch05_reshaping.ipynb", as_version=4)
    text = "\n".join(c.source for c in student.cells)
    answer = next(c for c in student.cells if "otter_answer_cell" in c.metadata.get("tags", []))
    assert answer.source == ('def conv_output_size(size, kernel, stride, padding):\n'
                             '    """Output height (or width) of a convolution with this kernel, '
                             'stride and padding."""\n    # your code here\n    raise NotImplementedError')
    assert "-(-size // stride)" not in text and "BEGIN SOLUTION" not in text
    assert "## Exercises" in text and "Exercise 5.1 How big is the output?" in text
    assert len(list((exported / "dist" / "autograder").glob("*.zip"))) == 1


@pytest.mark.skipif(shutil.which("bwrap") is None and not os.environ.get("CI"),
                    reason="the book's grader needs bubblewrap (apt-get install bubblewrap)")
def test_otter_run_and_the_book_s_grader_agree_on_every_submission(exported, tmp_path):
    student = exported / "dist" / "student" / "ch05_reshaping.ipynb"
    zip_file = next((exported / "dist" / "autograder").glob("*.zip"))
    submissions = tmp_path / "submissions"
    for name, answer in ANSWERS.items():
        nb = nbformat.read(student, as_version=4)
        if answer is not None:
            next(c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])).source = answer
        (submissions / name).mkdir(parents=True)
        nbformat.write(nb, submissions / name / "ch05_reshaping.ipynb")

    def otter_run(name: str) -> dict:
        out = tmp_path / "otter" / name
        out.mkdir(parents=True)
        done = subprocess.run([str(OTTER), "run", "-a", str(zip_file), "-o", str(out), "--no-logo",
                               str(submissions / name / "ch05_reshaping.ipynb")],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return json.loads((out / "results.json").read_text())

    with ThreadPoolExecutor(2) as pool:
        by_otter = dict(zip(ANSWERS, pool.map(otter_run, ANSWERS)))
    rows = grade_class(submissions, tmp_path / "book", Limits(notebook_s=120, exercise_s=60, call_s=5),
                       log=lambda line: None)
    with open(tmp_path / "book" / "gradebook.csv", newline="") as f:
        assert [dict(r) for r in csv.DictReader(f)] == rows
    book = {row["submission"]: row for row in rows}
    assert sorted(book) == sorted(ANSWERS)
    verdicts = {}
    for name, result in by_otter.items():
        test = next(t for t in result["tests"] if t["name"] == "exercise-5-1")
        otter_passed = test["score"] == test["max_score"]
        assert otter_passed == (book[name]["passed"] == "yes"), (name, test["output"], book[name])
        if not otter_passed:
            assert f"AssertionError: {book[name]['hint']}" in test["output"], (name, test["output"])
        verdicts[name] = otter_passed
    assert verdicts == {"correct": True, "off_by_one": False, "stub": False}
