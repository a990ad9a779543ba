"""Write the student and instructor editions of the book's notebooks.

    python -m mnist_lessons.tools.student_edition --out student-edition

writes ``student-edition/student/`` and ``student-edition/instructor/``, one notebook per chapter.
Both are made for Jupyter and Colab: the book's exercise directives become plain Markdown
("**Exercise 6.1 ...**"). The instructor edition keeps every solution under a "Solution" heading.
The student edition removes all solution text, and replaces each solution code cell by a stub:
a function keeps its name and arguments but its body becomes ``# your code here`` and
``raise NotImplementedError``; any other solution cell becomes those two lines. The automatic
checks stay, so a student runs the check cell under an exercise and reads the verdict; with the
stub in place it says "not done yet" instead of failing.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import nbformat

STUB = "# your code here\nraise NotImplementedError"
STUB_TAG = "exercise-stub"
SOLUTION_TAG = "solution"

_START = re.compile(r"```\{solution-start\}[^\n]*\n(?::[^\n]*\n)*```[ \t]*\n?")
_END = re.compile(r"```\{solution-end\}[^\n]*\n```[ \t]*\n?")
_EXERCISE = re.compile(r"```\{exercise\}[ \t]*([^\n]*)\n(?::[^\n]*\n)*\n?(.*?)\n```", re.S)


def stub_for(source: str) -> str:
    """The student's starting point for a solution cell.

    Each top-level function keeps its signature (and docstring) with the body replaced by the
    stub; a cell without functions becomes the two stub lines.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return STUB
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if not functions:
        return STUB
    parts = []
    for fn in functions:
        lines = [f"def {fn.name}({ast.unparse(fn.args)}):"]
        doc = ast.get_docstring(fn)
        if doc:
            lines.append(f'    """{doc}"""')
        lines += ["    # your code here", "    raise NotImplementedError"]
        parts.append("\n".join(lines))
    return "\n\n\n".join(parts)


def _plain_exercises(text: str) -> str:
    """``{exercise}`` directives as plain Markdown a notebook can show."""
    return _EXERCISE.sub(lambda m: f"**Exercise {m.group(1).strip()}.** {m.group(2).strip()}", text)


def _split_markdown(text: str, in_solution: bool) -> tuple[list[tuple[str, bool]], bool]:
    """Cut a Markdown cell at solution markers: ``[(piece, inside a solution?)]`` and the state
    after the cell."""
    pieces, pos = [], 0
    while True:
        marker = (_END if in_solution else _START).search(text, pos)
        if marker is None:
            pieces.append((text[pos:], in_solution))
            return pieces, in_solution
        pieces.append((text[pos:marker.start()], in_solution))
        pos, in_solution = marker.end(), not in_solution


def make_edition(nb: nbformat.NotebookNode, student: bool) -> nbformat.NotebookNode:
    """A copy of a chapter notebook for students (solutions stubbed) or instructors (kept)."""
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    in_solution = False
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "markdown":
            pieces, in_solution_after = _split_markdown(cell.source, in_solution)
            kept, previous = [], in_solution
            for piece, inside in pieces:
                if inside and not previous and not student:  # a solution starts here
                    kept.append("**Solution.**\n\n")
                previous = inside
                if not (inside and student):
                    kept.append(piece)
            in_solution = in_solution_after
            text = _plain_exercises("".join(kept)).strip()
            if text:
                out.cells.append(nbformat.v4.new_markdown_cell(text, metadata=dict(cell.metadata)))
        elif cell.cell_type == "code":
            is_solution = in_solution or SOLUTION_TAG in tags
            if is_solution and student:
                tags = [t for t in tags if t != SOLUTION_TAG] + [STUB_TAG]
                new = nbformat.v4.new_code_cell(stub_for(cell.source), metadata={**cell.metadata, "tags": tags})
            else:
                new = nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.metadata))
            out.cells.append(new)
    for i, cell in enumerate(out.cells):
        cell["id"] = f"cell-{i:02d}"
    return out


def write_editions(book_dir: Path, out_dir: Path) -> dict[str, list[Path]]:
    """Write both editions of every chapter notebook; return the written paths."""
    notebooks = sorted(Path(book_dir).glob("ch*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no chapter notebooks (ch*.ipynb) in {book_dir}")
    written: dict[str, list[Path]] = {"student": [], "instructor": []}
    for edition in written:
        folder = Path(out_dir) / edition
        folder.mkdir(parents=True, exist_ok=True)
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            target = folder / path.name
            nbformat.write(make_edition(nb, student=edition == "student"), target)
            written[edition].append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the student and instructor editions.")
    parser.add_argument("--book", default="book", help="folder of the chapter notebooks")
    parser.add_argument("--out", default="student-edition", help="where to write the editions")
    args = parser.parse_args(argv)
    written = write_editions(Path(args.book), Path(args.out))
    for edition, paths in written.items():
        print(f"{edition:10s} {len(paths)} notebooks in {Path(args.out) / edition}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
