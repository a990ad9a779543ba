"""Grading a class: a synthetic class made from the student edition, graded by the book's command.

The class is built here from the student edition (made from the book's sources by
``mnist_lessons.tools.editions.make_edition``; the numbers glued into the text are placeholders,
the code cells are the edition's own): right answers written differently from the book's
solutions, untouched stubs, the usual wrong answers, an answer that raises, an endless loop, a
deleted exercise cell, cells out of order, a notebook that hunts for the solutions, a corrupt
file, a notebook that prints 200 MB, a kernel that kills itself, an answer that asks for 18 GiB
and a file that is no notebook. The expected gradebook is written out by hand below: each hint
is what the chapter's checker says about that answer in the student's own notebook.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from mnist_lessons.tools import editions
from mnist_lessons.tools.grade import (
    GRADEBOOK_COLUMNS,
    GraderError,
    Limits,
    chapter_of,
    exercises_of,
    grade_class,
    main,
    without_checks,
)

ROOT = Path(__file__).resolve().parents[1]
# In CI a missing bubblewrap is a failure (the grader says so), elsewhere a skip.
NEEDS_BWRAP = pytest.mark.skipif(shutil.which("bwrap") is None and not os.environ.get("CI"),
                                 reason="bubblewrap is not installed (apt-get install bubblewrap)")
# Short limits keep the test quick; the endless loop costs one call_s.
LIMITS = Limits(notebook_s=120, exercise_s=60, call_s=3)

# Right answers, each written differently from the book's solution.
CORRECT = {
    1: '''def numerical_gradient(f, x, h=1e-5):
    steps = np.eye(len(x)) * h
    return np.array([(f(x + d) - f(x - d)) / (2 * h) for d in steps])''',
    2: '''def xent_grad(logits, labels):
    z = logits - logits.max(1)[:, None]
    p = np.exp(z)
    p /= p.sum(1)[:, None]
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)''',
    3: '''def steps_per_epoch(n_images, batch_size, drop_last):
    if drop_last:
        return n_images // batch_size
    return (n_images + batch_size - 1) // batch_size''',
    4: '''def conv_params(kh, kw, c_in, c_out):
    return c_out * (kh * kw * c_in + 1)''',
    5: '''import math

def conv_output_size(size, kernel, stride, padding):
    if padding == "SAME":
        return math.ceil(size / stride)
    return math.floor((size - kernel) / stride) + 1''',
    6: '''from numpy.lib.stride_tricks import sliding_window_view

def conv2d_valid(image, kernel):
    return np.einsum("ijkl,kl->ij", sliding_window_view(image, kernel.shape), kernel)''',
    7: '''def max_pool_2x2(m):
    return np.maximum(np.maximum(m[0::2, 0::2], m[1::2, 0::2]), np.maximum(m[0::2, 1::2], m[1::2, 1::2]))''',
    8: '''def dropout(x, rate, rng):
    mask = (rng.random(x.shape) >= rate).astype(x.dtype)
    return x * mask / (1 - rate)''',
    9: '''def stable_softmax(z):
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return np.exp(shifted) / np.sum(np.exp(shifted), axis=-1, keepdims=True)''',
    10: '''def adam_step(w, g, m, v, t, lr=1e-3):
    b1, b2, eps = 0.9, 0.999, 1e-7
    m = m + (1 - b1) * (g - m)
    v = v + (1 - b2) * (g * g - v)
    step = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return w - step * m / (np.sqrt(v) + eps), m, v''',
    11: '''def receptive_field(layers):
    result = []
    for n in range(1, len(layers) + 1):
        strides = [s for _, s in layers[:n]]
        size = 1 + sum((k - 1) * int(np.prod(strides[:i])) for i, (k, _) in enumerate(layers[:n]))
        result.append((size, int(np.prod(strides))))
    return result''',
}

WRONG = {  # the usual slips
    3: '''def steps_per_epoch(n_images, batch_size, drop_last):
    return n_images // batch_size''',
    4: '''def conv_params(kh, kw, c_in, c_out):
    return kh * kw * c_in * c_out''',
    7: '''def max_pool_2x2(m):
    h, w = m.shape
    return m.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))''',
    9: '''def stable_softmax(z):
    e = np.exp(z - z.mean(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)''',
}

RAISES = '''def max_pool_2x2(m):
    h, w = m.shape
    return m.reshape(h / 2, 2, w / 2, 2).max(axis=(1, 3))'''

ENDLESS = '''def steps_per_epoch(n_images, batch_size, drop_last):
    steps, seen = 0, 0
    while seen < n_images:
        steps += 1
        seen + batch_size  # meant +=
    return steps'''

# Looks everywhere for the solutions: the book's sources next to the package, the instructor
# edition (its path is written in below), any notebook on the disk; reads the checker's
# expected values from the calling frames; tries to overwrite another student's notebook.
HUNT = '''import glob, os, pathlib, sys
import mnist_lessons

places = [str(pathlib.Path(mnist_lessons.__file__).resolve().parents[1] / "book"), INSTRUCTOR, OTHERS,
          "/work", "/root", "/home", "/tmp", os.path.expanduser("~"), ".."]
found = []
for place in places:
    for path in glob.glob(os.path.join(place, "**", "*.ipynb"), recursive=True):
        try:
            text = open(path).read()
        except OSError:
            continue
        if "def max_pool_2x2" in text and "m.reshape(h // 2" in text:
            found.append(text)
print("the instructor's solutions:", found)
for path in glob.glob(os.path.join(OTHERS, "*", "*.ipynb")):
    try:
        open(path, "w").write("overwritten")
    except OSError:
        pass

def max_pool_2x2(m):
    frame = sys._getframe(1)
    while frame is not None:
        if "want" in frame.f_locals:
            return frame.f_locals["want"]
        frame = frame.f_back
    if found:
        return "found a solution"
    raise RuntimeError("no solution anywhere")'''

HUGE_OUTPUT = '''print("x" * 200_000_000)
for _ in range(100_000):
    print("y" * 1000)
open("big.bin", "wb").write(b"0" * 200_000_000)'''

STUB_HINT = "not done yet: replace the `raise NotImplementedError` with your code"

# submission, chapter, exercise, passed, hint: the exact gradebook, in the order it is written.
EXPECTED = (
    [("01_all_correct", str(n), f"{n}.1", "yes", "") for n in range(1, 12)] + [
        ("02_stubs", "3", "3.1", "no", STUB_HINT),
        ("02_stubs", "7", "7.1", "no", STUB_HINT),
        ("03_wrong", "3", "3.1", "no", "with drop_last=False the last, smaller batch is a step too: round up"),
        ("03_wrong", "4", "4.1", "no", "you counted the weights only: add one bias per filter (c_out)"),
        ("03_wrong", "7", "7.1", "no", "that is average pooling: keep the largest value of each window"),
        ("03_wrong", "9", "9.1", "no", "softmax([2000, 0, 0]) gave nan or inf: subtract the largest logit "
                                       "(the max, not the mean or the first) before exp"),
        ("04_raises", "7", "7.1", "no", "your code raised TypeError: 'float' object cannot be interpreted as "
                                        "an integer"),
        ("05_endless_loop", "3", "3.1", "no", "took longer than 3 s; look for a loop that never ends or a very "
                                              "slow one"),
        ("06_deleted_cell", "7", "7.1", "no", "`max_pool_2x2` is not defined in the notebook: keep the cell that "
                                              "defines it (copy it back from the student edition if it was "
                                              "deleted)"),
        ("07_out_of_order", "3", "3.1", "yes", ""),
        ("07_out_of_order", "7", "7.1", "no", STUB_HINT),
        ("08_hunts_solutions", "7", "7.1", "no", "your code raised RuntimeError: no solution anywhere"),
        ("09_corrupt", "7", "7.1", "no", "the notebook could not be read (NotJSONError: Notebook does not appear "
                                         "to be JSON: '{\"cells\": [{\"cell_type\": \"code\", \"sourc...): submit "
                                         "the .ipynb file that Jupyter or Colab saved (File > Download > .ipynb)"),
        ("10_huge_output", "3", "3.1", "yes", ""),
        ("11_kills_kernel", "4", "4.1", "no", "the kernel died while running your notebook's cells (a crash, or "
                                              "more memory than the 4096 MB allowed)"),
        ("12_asks_18_GiB", "9", "9.1", "no", "your code raised MemoryError: Unable to allocate 18.6 GiB for an "
                                             "array with shape (50000, 50000) and data type float64"),
        ("13_notes.txt", "", "", "no", "no notebook to grade (found .txt): submit the .ipynb files"),
    ])


class _AnyGlue(dict):
    """Every glued value as a placeholder: the text of the student edition is not graded."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> dict:
        return {"text/plain": "'0'", "text/markdown": "0", "text/latex": "0", "image/png": "iVBORw0KGgo="}


def student_edition(chapter: int) -> tuple[str, nbformat.NotebookNode]:
    """The student edition of one chapter, as make_edition writes it."""
    path = next((ROOT / "book").glob(f"ch{chapter:02d}_*.ipynb"))
    titles, labels = editions.book_index([ROOT / "book"])
    page = editions.Page(f"book/{path.stem}", _AnyGlue(), titles, labels)
    nb = editions.make_edition(nbformat.read(path, as_version=4), "student", page, commit="0" * 40,
                               notebook=path.name)
    return path.name, nb


def instructor_edition(chapter: int) -> tuple[str, nbformat.NotebookNode]:
    path = next((ROOT / "book").glob(f"ch{chapter:02d}_*.ipynb"))
    titles, labels = editions.book_index([ROOT / "book"])
    page = editions.Page(f"book/{path.stem}", _AnyGlue(), titles, labels)
    return path.name, editions.make_edition(nbformat.read(path, as_version=4), "instructor", page,
                                            commit="0" * 40, notebook=path.name)


def _stub_index(nb, chapter: int) -> int:
    name = exercises_of(chapter)[0][2]
    return next(i for i, c in enumerate(nb.cells) if editions.STUB_TAG in c.metadata.get("tags", [])
                and f"def {name}(" in c.source)


def _answered(chapter: int, source: str | None = None) -> tuple[str, nbformat.NotebookNode]:
    name, nb = student_edition(chapter)
    if source is not None:
        nb.cells[_stub_index(nb, chapter)].source = source
    return name, nb


def make_class(folder: Path, instructor: Path) -> None:
    """Write the synthetic class into ``folder`` (see the module docstring)."""
    def put(student: str, chapter: int, source: str | None = None, nb=None) -> Path:
        name, made = _answered(chapter, source) if nb is None else (nb[0], nb[1])
        (folder / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(made, folder / student / name)
        return folder / student / name

    for n, source in CORRECT.items():
        put("01_all_correct", n, source)
    put("02_stubs", 3)
    put("02_stubs", 7)
    for n, source in WRONG.items():
        put("03_wrong", n, source)
    (folder / "03_wrong" / "scratch.py").write_text("print('my notes')\n")
    put("04_raises", 7, RAISES)
    put("05_endless_loop", 3, ENDLESS)
    name, nb = student_edition(7)
    del nb.cells[_stub_index(nb, 7)]
    put("06_deleted_cell", 7, nb=(name, nb))
    # The answer sits above the stub (run last by the student, so it worked for them); and a
    # helper the answer needs is defined in a cell after the check (fine at the end of the run).
    name, nb = student_edition(7)
    at = _stub_index(nb, 7)
    nb.cells.insert(at, nbformat.v4.new_code_cell(CORRECT[7], execution_count=9))
    nb.cells[at + 1].execution_count = 3
    put("07_out_of_order", 7, nb=(name, nb))
    name, nb = student_edition(3)
    nb.cells[_stub_index(nb, 3)].source = ("def steps_per_epoch(n_images, batch_size, drop_last):\n"
                                           "    return rounding(n_images, batch_size, drop_last)")
    nb.cells.append(nbformat.v4.new_code_cell(
        "def rounding(n, b, drop):\n    return n // b if drop else -(-n // b)"))
    put("07_out_of_order", 3, nb=(name, nb))
    hunt = HUNT.replace("INSTRUCTOR", repr(str(instructor))).replace("OTHERS", repr(str(folder)))
    put("08_hunts_solutions", 7, hunt)
    (folder / "09_corrupt").mkdir()
    (folder / "09_corrupt" / "ch07_pooling.ipynb").write_text(
        '{"cells": [{"cell_type": "code", "source": "def max_pool_2x2(m):\\n')
    name, nb = _answered(3, CORRECT[3])
    nb.cells.insert(_stub_index(nb, 3) + 1, nbformat.v4.new_code_cell(HUGE_OUTPUT))
    put("10_huge_output", 3, nb=(name, nb))
    name, nb = _answered(4, CORRECT[4])
    nb.cells.insert(_stub_index(nb, 4) + 1, nbformat.v4.new_code_cell(
        "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)  # every process it may signal\n"
        "except ProcessLookupError:\n    pass\nos.kill(os.getpid(), signal.SIGKILL)"))
    put("11_kills_kernel", 4, nb=(name, nb))
    put("12_asks_18_GiB", 9, "def stable_softmax(z):\n    table = np.ones((50_000, 50_000))\n"
                             "    return table[:1] * z")
    (folder / "13_notes.txt").write_text("I did the exercises on paper.\n")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    submissions, out, instructor = base / "submissions", base / "out", base / "instructor"
    instructor.mkdir()
    for chapter in (3, 7):
        name, nb = instructor_edition(chapter)
        nbformat.write(nb, instructor / name)
    make_class(submissions, instructor)
    before = _digest(submissions)
    rows = grade_class(submissions, out, LIMITS, jobs=2, log=lambda line: None)
    return {"rows": rows, "out": out, "submissions": submissions, "before": before, "instructor": instructor}


@NEEDS_BWRAP
def test_the_synthetic_class_gets_exactly_the_expected_gradebook(graded_class):
    with open(graded_class["out"] / "gradebook.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == GRADEBOOK_COLUMNS
        got = [tuple(row[c] for c in GRADEBOOK_COLUMNS) for row in reader]
    assert len({row[0] for row in EXPECTED}) >= 12
    for want, row in zip(EXPECTED, got):
        assert row == want
    assert got == EXPECTED


@NEEDS_BWRAP
def test_no_submission_changed_another_or_read_a_solution(graded_class):
    assert _digest(graded_class["submissions"]) == graded_class["before"]  # nothing overwritten
    assert sorted(p.name for p in graded_class["out"].iterdir()) == ["feedback", "gradebook.csv"]
    hunt = (graded_class["out"] / "feedback" / "08_hunts_solutions.md").read_text()
    assert "no solution anywhere" in hunt and "m.reshape(h // 2" not in hunt
    # the solutions really are where the hunt looked, outside the sandbox
    assert "m.reshape(h // 2" in (graded_class["instructor"] / "ch07_pooling.ipynb").read_text()


@NEEDS_BWRAP
def test_feedback_tells_each_student_what_passed_why_not_and_how_long_it_ran(graded_class):
    feedback = graded_class["out"] / "feedback"
    assert sorted(p.name for p in feedback.iterdir()) == sorted(f"{s}.md" for s in {r[0] for r in EXPECTED})
    correct = (feedback / "01_all_correct.md").read_text()
    assert "11 of 11 checked exercises passed" in correct
    assert correct.count(": passed") == 11 and "The check ran for" in correct
    wrong = (feedback / "03_wrong.md").read_text()
    assert "0 of 4 checked exercises passed" in wrong
    assert "hint: that is average pooling: keep the largest value of each window" in wrong
    assert "Not graded (not notebooks): `scratch.py`" in wrong
    huge = (feedback / "10_huge_output.md").read_text()
    assert "the notebook printed more than 1024 KB" in huge
    assert 'the cell `print("x" * 200_000_000)` raised OSError: \\[Errno 27\\] File too large' in huge
    assert (feedback / "10_huge_output.md").stat().st_size < 20_000
    loop = (feedback / "05_endless_loop.md").read_text()
    assert loop.count("took longer than 3 s") == 1, "the check stops at the first call that runs out of time"


def test_the_checkers_name_the_function_the_student_edition_defines():
    # oracle: the check cells of the book's sources, read with a regex
    import re

    for path in sorted((ROOT / "book").glob("ch*.ipynb")):
        chapter = chapter_of(path.name, None)
        calls = [re.search(r"^(check_\w+)\((\w+)\)", c.source, re.M) for c in nbformat.read(path, 4).cells
                 if c.cell_type == "code"]
        calls = [(m.group(1), m.group(2)) for m in calls if m]
        assert [(checker.__name__, name) for _, checker, name in exercises_of(chapter)] == calls


def test_a_notebook_s_chapter_comes_from_its_name_or_its_title():
    titled = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 7. Pooling\n\nText.")])
    assert chapter_of("ch07_pooling.ipynb", None) == 7
    assert chapter_of("alice_ch11_accuracy.ipynb", None) == 11
    assert chapter_of("my homework.ipynb", titled) == 7
    assert chapter_of("untitled.ipynb", nbformat.v4.new_notebook()) is None


def test_the_check_is_removed_from_a_cell_and_the_answer_kept():
    cell = ("def f(m):\n    return m\n\nfrom mnist_lessons.exercises import check_max_pool_2x2\n"
            "check_max_pool_2x2(f)\nprint('done')\n")
    assert without_checks(cell) == "def f(m):\n    return m\n\nprint('done')\n"
    assert without_checks("def broken(:\n") == "def broken(:\n"


def test_bad_settings_get_a_clear_error(tmp_path, capsys):
    with pytest.raises(GraderError, match="call_s must be a positive number"):
        Limits(call_s=0)
    with pytest.raises(GraderError, match="is not a folder"):
        grade_class(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "subs").mkdir()
    with pytest.raises(GraderError, match="outside the submissions folder"):
        grade_class(tmp_path / "subs", tmp_path / "subs" / "out")
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "error: " in capsys.readouterr().err


def test_values_cross_between_grader_and_kernel_with_their_type_and_every_bit():
    import json

    import numpy as np

    from mnist_lessons.tools.grade_codec import decode, encode

    generator = np.random.default_rng(8)
    generator.random(3)
    values = [7, 2**80, -0.0, 1e-310, float("inf"), "text", None, True, np.int64(7), np.float32(1.5),
              np.bool_(False), np.arange(6.0).reshape(2, 3).T, np.array(3.0), (1, [2.5, "a"]), {"k": 1}]
    for value in values:
        back = decode(json.loads(json.dumps(encode(value))))
        assert type(back) is type(value), value
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and back.shape == value.shape and np.array_equal(back, value)
        else:
            assert repr(back) == repr(value)
    assert np.isnan(decode(json.loads(json.dumps(encode(float("nan"))))))
    copy = decode(json.loads(json.dumps(encode(generator))))
    assert copy.random() == generator.random()  # the same state, so the same next draw
    for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):  # states holding arrays too
        original = np.random.Generator(getattr(np.random, name)(11))
        original.random(5)
        copy = decode(json.loads(json.dumps(encode(original))))
        assert type(copy.bit_generator).__name__ == name
        np.testing.assert_array_equal(copy.random(4), original.random(4), err_msg=name)
        assert copy.integers(0, 2**62) == original.integers(0, 2**62), name

    class Answer:
        def __repr__(self):
            return "<an answer>"

    opaque = decode(encode(Answer()))
    assert type(opaque).__name__ == "Answer" and repr(opaque) == "<an answer>" and not callable(opaque)
    with pytest.raises(ValueError, match="unknown bit generator"):
        decode({"t": "rng", "state": json.dumps({"bit_generator": "seed"})})
