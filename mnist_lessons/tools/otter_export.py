"""The book's checked exercises as otter-grader assignments, for Gradescope and JupyterHub courses.

    python -m mnist_lessons.tools.otter_export --out otter [--chapters 3 7]

writes, for each chapter, a master notebook in otter-grader's format
(``otter/<chapter>/<chapter>.ipynb``), made from the book's source notebook: the chapter's
imports, its "Exercises" heading, and its checked exercise as an otter question whose prompt is
the exercise's text, whose solution is the book's solution, and whose test calls the book's
checker (so the hints are the book's). It then runs otter's own ``otter assign`` on it, which
writes ``otter/<chapter>/dist/student/`` (the notebook to hand out: the solution replaced by the
same stub as the book's student edition) and ``otter/<chapter>/dist/autograder/`` (the
``autograder.zip`` that ``otter run`` and Gradescope grade with).

Why otter-grader and not nbgrader: otter grades one notebook with one command and no database
(``otter run -a autograder.zip submission.ipynb``), its ``autograder.zip`` is what Gradescope
takes, and it adds few packages to this project's lock; nbgrader needs a course folder, a
database and a Jupyter server with its extensions (jupyterlab, notebook, sqlalchemy, alembic).

Only the checked exercise of each chapter (N.1) is exported; the "predict, then run" and
"discuss" exercises are read by a person. Grading runs in the kernel that ran the student's
notebook, as otter always does: unlike ``python -m mnist_lessons.tools.grade``, there is no
sandbox here and the checker shares the process with the student's code (see the instructors
page).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from . import editions
from .grade import exercises_of

SITE_URL = editions.SITE_URL
# The chapter's imports an answer may rely on; the rest (figures, widgets, data) the exercise
# does not need, and importing them would only slow grading down.
EXERCISE_MODULES = ("numpy", "math", "tensorflow", "keras")


def _book_chapters(book: Path) -> dict[int, Path]:
    out = {}
    for path in sorted(Path(book).glob("ch*.ipynb")):
        match = re.match(r"ch(\d+)_", path.name)
        if match:
            out[int(match.group(1))] = path
    return out


def solution_with_markers(source: str) -> str:
    """The book's solution cell with each function's body between otter's solution markers,
    followed by the book's stub lines.

    Otter removes what lies between ``# BEGIN SOLUTION NO PROMPT`` and ``# END SOLUTION`` from
    the student notebook, so the student sees ``# your code here`` and ``raise
    NotImplementedError`` under the signature and docstring, as in the book's student edition;
    in the master notebook the solution returns before the stub is reached.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    inserts: list[tuple[int, list[str]]] = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        body = node.body
        if ast.get_docstring(node) is not None:
            body = body[1:]
        if not body:
            continue
        indent = " " * body[0].col_offset
        inserts.append((body[0].lineno - 1, [f"{indent}# BEGIN SOLUTION NO PROMPT"]))
        inserts.append((node.end_lineno, [f"{indent}# END SOLUTION", f"{indent}# your code here",
                                          f"{indent}raise NotImplementedError"]))
    for at, new in sorted(inserts, key=lambda item: -item[0]):
        lines[at:at] = new
    return "\n".join(lines)


def _test_cell(number: str, checker: str, name: str) -> str:
    return (f"def test_exercise_{number.replace('.', '_')}({name}):\n"
            f"    from mnist_lessons.exercises import {checker}\n"
            f"    verdict = {checker}({name})\n"
            f"    failed = [hint for _, ok, hint in verdict.results if not ok]\n"
            f"    assert verdict.passed, failed[0] if failed else 'not passed'\n")


def _exercise_text(markdown: str, chapter_page: editions.Page, where: str) -> str:
    """The exercise's text without its solution parts, as plain Markdown."""
    parts, _ = editions.split_solutions(markdown, None, where)
    text = "\n\n".join(p.text for p in parts if not p.solution)
    text = re.sub(r"^#{1,6}\s+Exercises\s*$", "", text, flags=re.M)  # the notebook has its own heading
    return editions.convert_markdown(text, chapter_page, where)


def master_notebook(path: Path, book: Path) -> nbformat.NotebookNode:
    """The otter master notebook of one chapter of the book (see the module's docstring)."""
    nb = nbformat.read(path, as_version=4)
    chapter = int(re.match(r"ch(\d+)_", path.name).group(1))
    (number, checker, name), = exercises_of(chapter)
    cells = nb.cells
    check_at = next(i for i, c in enumerate(cells) if c.cell_type == "code"
                    and re.search(rf"^{checker.__name__}\(", c.source, re.M))
    solution = next(c for c in reversed(cells[:check_at]) if "solution" in c.metadata.get("tags", []))
    prompt_at = next(i for i in range(check_at, -1, -1) if cells[i].cell_type == "markdown"
                     and f"{{exercise}} {number}" in cells[i].source)
    title = next(c.source.splitlines()[0].lstrip("# ").strip() for c in cells if c.cell_type == "markdown")
    titles, labels = editions.book_index([Path(book)])
    page = editions.Page(f"{editions.BOOK_FOLDER}/{path.stem}", {}, titles, labels)
    exercises_at = next(i for i, c in enumerate(cells) if c.cell_type == "markdown"
                        and re.search(r"^#{1,6}\s+Exercises\b", c.source, re.M))
    imports = []
    for cell in cells[:exercises_at]:
        if cell.cell_type == "code":
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            imports += [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import)
                        and all(a.name.split(".")[0] in EXERCISE_MODULES for a in n.names)]
    config = {"name": path.stem, "init_cell": True, "check_all_cell": False, "export_cell": False,
              "run_tests": True, "tests": {"files": False, "ok_format": False}, "generate": True}
    raw = nbformat.v4.new_raw_cell
    md = nbformat.v4.new_markdown_cell
    code = nbformat.v4.new_code_cell
    out = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})
    out.cells = [
        raw("# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False).strip()),
        md(f"# {title}: exercise {number}\n\nRead the chapter in the book first: "
           f"[{editions.escape_markdown(title)}]({page.url(page.name)}). This notebook holds its "
           f"automatically graded exercise."),
        code("\n".join(dict.fromkeys(imports))),
        md("## Exercises"),
        raw(f"# BEGIN QUESTION\nname: exercise-{number.replace('.', '-')}\npoints: 1"),
        md(_exercise_text(cells[prompt_at].source, page, f"{path.name}, cell {prompt_at}")),
        raw("# BEGIN SOLUTION"),
        code(solution_with_markers(solution.source)),
        raw("# END SOLUTION"),
        raw("# BEGIN TESTS"),
        code(_test_cell(number, checker.__name__, name)),
        raw("# END TESTS"),
        raw("# END QUESTION"),
    ]
    return out


def export(out: Path, chapters: list[int] | None = None, book: Path = Path("book"),
           run_otter: bool = True, run_tests: bool = True) -> list[Path]:
    """Write the master notebooks and, with ``run_otter``, run ``otter assign`` on each; return
    the chapter folders written. ``run_tests=False`` skips otter's check that the solution
    passes its own tests (``otter assign --no-run-tests``): it runs the whole master notebook
    once more, which ``otter run`` on a right answer also does."""
    available = _book_chapters(book)
    if not available:
        raise FileNotFoundError(f"no chapters (ch*.ipynb) in {book}: run this from the repository root "
                                "or pass --book")
    wanted = chapters or sorted(available)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValueError(f"no chapter {missing[0]} in the book; chapters are {sorted(available)}")
    written = []
    for chapter in wanted:
        path = available[chapter]
        folder = Path(out) / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        master = folder / path.name
        nbformat.write(master_notebook(path, book), master)
        if run_otter:
            otter = Path(sys.executable).with_name("otter")
            options = ["--no-pdfs"] + ([] if run_tests else ["--no-run-tests"])
            done = subprocess.run([str(otter), "assign", *options, master.name, "dist"], cwd=folder,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"otter assign failed on {master}:\n{(done.stdout + done.stderr)[-3000:]}")
        written.append(folder)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the book's checked exercises as otter-grader "
                                                 "assignments (master notebooks, then otter assign).")
    parser.add_argument("--out", default="otter", help="where to write (default: %(default)s)")
    parser.add_argument("--chapters", type=int, nargs="*", help="chapter numbers (default: all)")
    parser.add_argument("--book", default="book", help="the book's sources (default: %(default)s)")
    parser.add_argument("--no-run-tests", action="store_true",
                        help="skip otter's check that each solution passes its tests (faster)")
    args = parser.parse_args(argv)
    try:
        written = export(Path(args.out), args.chapters, Path(args.book), run_tests=not args.no_run_tests)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for folder in written:
        print(f"{folder}: master {folder.name}.ipynb, student dist/student/, autograder dist/autograder/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
