"""The reader, student and instructor editions: MyST turned into the Markdown Colab renders.

Unit cases use small hand-written cells and notebooks. The real run converts the notebooks the
book build executed (fixture ``executed_book`` in conftest.py: the session's build, or the
folder ``MNIST_LESSONS_EXECUTED`` names) and checks what a Colab user would see, against an
oracle read from the book's sources by a plain line scan written here, not by the module.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from markdown_it import MarkdownIt

from mnist_lessons.tools import editions
from mnist_lessons.tools.editions import (
    GLUE_MARK,
    GLUE_NOTE,
    STUB_TAG,
    EditionError,
    Page,
    Target,
    glued_values,
    main,
    make_edition,
    myst_to_markdown,
    split_solutions,
    stub_for,
    write_editions,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "book").glob("*.ipynb"))
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SETUP = ('import subprocess, sys\nif "google.colab" in sys.modules:\n    subprocess.run([sys.executable, "-m", '
         '"pip", "install", "mnist-lessons @ git+https://github.com/mnist-lessons/mnist-lessons@main"])')
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
COMMONMARK = MarkdownIt("commonmark")
# What MyST looks like once a CommonMark renderer has been through it.
MYST_LEFT = re.compile(r"\{glue|```\{|:::\{|\{(ref|doc|numref|eq|exercise|solution-start|solution-end|"
                       r"solution|admonition|note|tip|warning|glue:figure|code-cell|math)\}|language-\{")
ROLE = re.compile(r"\{[\w:+-]+\}`[^`]*`")


def _page(**glued) -> Page:
    return Page("book/ch07_pooling", glued,
                titles={"book/ch01_importing_tensorflow": "1. Importing TensorFlow", "book/intro": "MNIST Lessons"},
                labels={"ex-1-1": Target("book/ch01_importing_tensorflow", "ex-1-1", "Exercise 1.1 Tensors"),
                        "sec-x": Target("book/ch07_pooling", "sec-x", "Max or average?"),
                        "eq-softmax": Target("book/ch09_softmax", "equation-eq-softmax", "(eq-softmax)")})


def _md(text: str, **glued) -> str:
    return myst_to_markdown(text, page=_page(**glued), where="test.ipynb, cell 3")


# ----------------------------------------------------------------------------------------------
# One Markdown cell


def test_admonitions_become_quoted_blocks_with_a_bold_title():
    text = "Before.\n\n```{admonition} The article, then and now\n:class: tip\n\nIt used `tf.nn.max_pool`.\n```\n"
    assert _md(text) == "Before.\n\n> **The article, then and now**\n>\n> It used `tf.nn.max_pool`."
    assert _md("```{note}\nShort runs in CI.\n```") == "> **Note**\n>\n> Short runs in CI."
    assert _md(":::{warning}\nTwo\n\nparagraphs.\n:::") == "> **Warning**\n>\n> Two\n>\n> paragraphs."
    dropdown = _md("```{admonition} More\n:class: dropdown\nHidden.\n```")
    assert dropdown == "<details>\n<summary><b>More</b></summary>\n\nHidden.\n\n</details>"


def test_exercises_become_headings_with_their_number():
    text = "```{exercise} 7.1 Max pooling in NumPy\n:label: ex-7-1\n:nonumber:\n\nWrite `max_pool_2x2(m)`.\n```"
    assert _md(text) == "### Exercise 7.1 Max pooling in NumPy\n\nWrite `max_pool_2x2(m)`."
    numbered = ":::{exercise} Shapes\n:label: a\nOne.\n:::\n\n:::{exercise}\nTwo.\n:::"
    assert _md(numbered) == "### Exercise 1 (Shapes)\n\nOne.\n\n### Exercise 2\n\nTwo."


def test_cross_references_become_links_to_the_published_page():
    site = "https://mnist-lessons.github.io/mnist-lessons/book/"
    assert _md("See {doc}`ch01_importing_tensorflow`.") == \
        f"See [1. Importing TensorFlow]({site}ch01_importing_tensorflow.html)."
    assert _md("{doc}`the start </book/intro>`") == f"[the start]({site}intro.html)"
    assert _md("{ref}`ex-1-1`") == f"[Exercise 1.1 Tensors]({site}ch01_importing_tensorflow.html#ex-1-1)"
    assert _md("{numref}`this one <sec-x>`") == f"[this one]({site}ch07_pooling.html#sec-x)"
    assert _md("{eq}`eq-softmax`") == f"[(eq-softmax)]({site}ch09_softmax.html#equation-eq-softmax)"
    other = myst_to_markdown("{doc}`intro`", page=Page("book/x", titles={"book/intro": "Hi"},
                                                        site_url="https://example.org/b"))
    assert other == "[Hi](https://example.org/b/book/intro.html)"


def test_glued_text_becomes_the_value_marked_as_computed_when_the_book_was_built():
    text = "Test accuracy: {glue:text}`ch10_acc`, after {glue:text}`ch10_steps:,d` steps.\n\nNext paragraph."
    got = _md(text, ch10_acc={"text/plain": "'99.54%'"}, ch10_steps={"text/plain": "5750"})
    assert got == (f"Test accuracy: 99.54%{GLUE_MARK}, after 5,750{GLUE_MARK} steps.\n\n{GLUE_NOTE}\n\n"
                   "Next paragraph.")
    assert GLUE_NOTE == ("<sub>† computed when the book was built; your own run may give slightly "
                         "different numbers.</sub>")
    assert _md("{glue:text}`x:.1f`", x={"text/plain": "0.9954"}).startswith("1.0" + GLUE_MARK)
    assert _md("{glue:text}`name`", name={"text/plain": "'a_b*c'"}).startswith(r"a\_b\*c" + GLUE_MARK)
    with pytest.raises(EditionError, match=r"test\.ipynb, cell 3: no value was glued under 'missing'"):
        _md("{glue:text}`missing`")


def test_glued_figures_become_the_png_itself():
    text = "```{glue:figure} ch2_grid\n:alt: A grid of digits\n\nThe first 25 digits.\n```"
    assert _md(text, ch2_grid={"image/png": PNG, "text/plain": "<Figure>"}) == \
        f"![A grid of digits](data:image/png;base64,{PNG})\n\nThe first 25 digits."
    assert _md("```{glue} ch2_grid\n```", ch2_grid={"image/png": PNG}) == \
        f"![ch2\\_grid](data:image/png;base64,{PNG})"
    assert _md("The value is {glue}`v`.", v={"text/plain": "3"}) == \
        f"The value is 3{GLUE_MARK}.\n\n{GLUE_NOTE}"
    html = COMMONMARK.render(_md(text, ch2_grid={"image/png": PNG}))
    assert f'<img src="data:image/png;base64,{PNG}" alt="A grid of digits"' in html


def test_math_stays_dollar_math():
    text = "Softmax: $p_i = e^{z_i} / \\sum_j e^{z_j}$.\n\n$$\nL = -\\log p\n$$ (eq-loss)\n\n$$x$$"
    assert _md(text) == "Softmax: $p_i = e^{z_i} / \\sum_j e^{z_j}$.\n\n$$\nL = -\\log p\n$$\n\n$$\nx\n$$"
    assert _md("```{math}\n:label: m\na^2\n```") == "$$\na^2\n$$"


def test_code_fences_and_code_spans_are_left_alone():
    text = "Write ``{doc}`x` `` to link.\n\n```python\nprint('{glue:text}`x`')\n```\n\n:::text\nplain\n:::"
    assert _md(text) == ("Write ``{doc}`x` `` to link.\n\n```python\nprint('{glue:text}`x`')\n```\n\n"
                         "```text\nplain\n```")


def test_targets_and_comments_vanish_and_roles_in_lists_tables_headings_and_quotes_convert():
    site = "https://mnist-lessons.github.io/mnist-lessons/book/"
    link = f"[1. Importing TensorFlow]({site}ch01_importing_tensorflow.html)"
    text = ("(sec-x)=\n## See {doc}`ch01_importing_tensorflow`\n% a comment\n\n"
            "- {doc}`ch01_importing_tensorflow`\n\n| a | b |\n|---|---|\n| {doc}`ch01_importing_tensorflow` | 1 |\n\n"
            "> {doc}`ch01_importing_tensorflow`")
    assert _md(text) == f"## See {link}\n\n- {link}\n\n| a | b |\n|---|---|\n| {link} | 1 |\n\n> {link}"


@pytest.mark.parametrize("text, message", [
    ("```{figure} a.png\n```", r"the directive \{figure\} is not supported"),
    ("```{mermaid}\ngraph\n```", r"the directive \{mermaid\} is not supported"),
    ("Press {kbd}`Ctrl`.", r"the role \{kbd\} is not supported"),
    ("{doc}`nowhere`", r"\{doc\} points to 'nowhere'"),
    ("{ref}`no-label`", r"\{ref\} points to 'no-label'"),
    ("```{admonition} T\n:unknown-option: 1\nx\n```", r"options this tool does not know: unknown-option"),
    ("```{note}\nThe fence never closes.\n", r"never closed"),
    ("```{admonition} A\n```{solution-start} x\n```\n```", r"never closed"),
    ("- item\n\n  ```{note}\n  x\n  ```", r"inside a list or quote"),
    ("Text[^1].\n\n[^1]: A footnote.", r"unsupported Markdown construct"),
    ("See [chapter 1](ch01_importing_tensorflow.ipynb).", r"relative address 'ch01_importing_tensorflow.ipynb'"),
])
def test_anything_unknown_is_an_error_naming_the_cell(text, message):
    with pytest.raises(EditionError, match=r"test\.ipynb, cell 3.*" + message):
        _md(text)


# ----------------------------------------------------------------------------------------------
# Solution markers


@pytest.mark.parametrize("start, end", [
    ("```{solution-start} ex-1\n:class: dropdown\n```", "```{solution-end}\n```"),
    (":::{solution-start} ex-1\n:class: dropdown\n:::", ":::{solution-end}\n:::"),
    ("````{solution-start} ex-1\n---\nclass: dropdown\n---\n````", "::::{solution-end}\n::::"),
    ("```{solution-start} ex-1\n```", "```{solution-end}\n```"),
])
def test_every_marker_syntax_cuts_the_solution_out(start, end):
    text = f"Exercise text.\n\n{start}\n\nThe answer is 42.\n\n{end}\n\nAfter."
    parts, open_at = split_solutions(text, None, "nb, cell 1")
    assert open_at is None
    assert [(p.solution, p.opens, p.text.strip()) for p in parts] == [
        (False, False, "Exercise text."), (True, True, "The answer is 42."), (False, False, "After.")]


def test_a_solution_can_span_cells():
    parts, open_at = split_solutions("Ex.\n\n:::{solution-start} ex-1\n:::\n", None, "nb, cell 1")
    assert open_at == "nb, cell 1" and [(p.solution, p.opens, p.text.strip()) for p in parts] == [
        (False, False, "Ex."), (True, True, "")]
    parts, open_at = split_solutions("Because.\n\n:::{solution-end}\n:::", open_at, "nb, cell 3")
    assert open_at is None and [(p.solution, p.text.strip()) for p in parts] == [(True, "Because.")]


@pytest.mark.parametrize("text, state, message", [
    ("```{solution-end}\n```", None, r"nb, cell 4: solution-end without a solution-start"),
    (":::{solution-start} ex-2\n:::", "nb, cell 1", r"nb, cell 4: solution-start while the solution "
                                                    r"opened in nb, cell 1 is still open"),
    ("```{solution-start} ex-2\n:class: dropdown\n\nThe answer.\n\n```{solution-end}\n```", None,
     r"nb, cell 4: \{solution-start\} \(line 1\) has content; is its closing fence missing\?"),
    ("Text.\n\n```{solution-end}\n", "nb, cell 1", r"nb, cell 4: the fence '```\{solution-end\}' \(line 3\) "
                                                r"is never closed"),
    ("> ```{solution-start} ex-2\n> ```", None, r"nb, cell 4: \{solution-start\} inside a list or quote"),
    ("```{solution-start}\n```", None, r"nb, cell 4: solution-start names no exercise label"),
])
def test_unbalanced_or_broken_markers_are_errors_naming_the_cell(text, state, message):
    with pytest.raises(EditionError, match=message):
        split_solutions(text, state, "nb, cell 4")


def test_a_marker_inside_another_directive_is_an_error():
    with pytest.raises(EditionError, match=r"cell 2, \{admonition\}: \{solution-start\} inside another"):
        myst_to_markdown("````{admonition} A\n```{solution-start} x\n```\n````", where="cell 2")


# ----------------------------------------------------------------------------------------------
# Whole notebooks


def _notebook(end_marker: str = ":::{solution-end}\n:::") -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    out = lambda text: [nbformat.v4.new_output("stream", name="stdout", text=text)]  # noqa: E731
    cells = [
        md("# 9. Demo"),
        code(SETUP, metadata={"tags": ["remove-cell"]}),
        md("The accuracy was {glue:text}`acc`."),
        code("print('lesson')", outputs=out("lesson\n"), execution_count=3),
        md("## Exercises\n\n```{exercise} 9.1 Square\n:label: ex-9-1\n:nonumber:\n\nWrite `square(x)`.\n```\n\n"
           "```{solution-start} ex-9-1\n:class: dropdown\n```"),
        code('def square(x):\n    """x squared."""\n    return x * x  # SECRET-CODE', metadata={"tags": ["solution"]},
             outputs=out("SECRET-OUTPUT\n"), execution_count=4),
        md("```{solution-end}\n```"),
        code("check_square(square)", outputs=out("all 5 cases passed\n"), execution_count=5),
        md(":::{exercise} 9.2 Discuss\n:label: ex-9-2\n:nonumber:\nWhy?\n:::\n\n"
           ":::{solution-start} ex-9-2\n:class: dropdown\n:::\n\nBecause SECRET-TEXT and {glue:text}`acc`.\n\n"
           + end_marker),
    ]
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "P"}})


def _editions(nb=None) -> dict[str, nbformat.NotebookNode]:
    page = Page("book/ch09_demo", {"acc": {"text/plain": "'99.54%'"}})
    return {ed: make_edition(nb or _notebook(), ed, page, commit=COMMIT, notebook="ch09_demo.ipynb")
            for ed in editions.EDITIONS}


def _everything(nb) -> str:
    """Every source and output text of a notebook, as a reader could see it."""
    texts = []
    for cell in nb.cells:
        texts.append(cell.source)
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(texts)


def test_reader_edition_folds_solutions_away_and_keeps_the_outputs():
    reader = _editions()["reader"]
    nbformat.validate(reader)
    solution = next(c for c in reader.cells if "square(x)" in c.source and c.cell_type == "code")
    assert solution.source.startswith("#@title Solution\ndef square(x):")
    assert solution.metadata["cellView"] == "form" and solution.outputs == []
    assert "lesson\n" in _everything(reader) and "all 5 cases passed" in _everything(reader)
    text = reader.cells[-1].source
    assert text.startswith("### Exercise 9.2 Discuss\n\nWhy?\n\n<details>\n<summary><b>Solution</b></summary>\n\n"
                           f"Because SECRET-TEXT and 99.54%{GLUE_MARK}.")
    assert "</details>" in text and "SECRET-TEXT" in COMMONMARK.render(text)
    assert COMMIT in reader.cells[1].source and "@main" not in reader.cells[1].source


def test_student_edition_removes_every_solution_and_keeps_stubs_and_checks():
    student = _editions()["student"]
    nbformat.validate(student)
    everything = _everything(student)
    assert "SECRET" not in everything and "<details>" not in everything
    stub = next(c for c in student.cells if STUB_TAG in c.metadata.get("tags", []))
    assert stub.source == 'def square(x):\n    """x squared."""\n    # your code here\n    raise NotImplementedError'
    assert "solution" not in stub.metadata["tags"] and stub.outputs == []
    check = next(c for c in student.cells if c.source == "check_square(square)")
    assert check.outputs == [], "a check's output was computed with the solution in place"
    assert "lesson\n" in everything, "outputs of the lesson itself stay"
    assert student.cells[-1].source == "### Exercise 9.2 Discuss\n\nWhy?"


def test_instructor_edition_keeps_every_solution_visible():
    instructor = _editions()["instructor"]
    everything = _everything(instructor)
    assert "SECRET-CODE" in everything and "SECRET-OUTPUT" in everything and "<details>" not in everything
    assert "**Solution.**\n\nBecause SECRET-TEXT" in instructor.cells[-1].source
    assert "Write `square(x)`.\n\n**Solution.**" in everything


def test_an_unclosed_solution_names_the_notebook_and_the_cell_where_it_opened():
    with pytest.raises(EditionError, match=r"ch09_demo\.ipynb: the solution opened in ch09_demo\.ipynb, "
                                           r"cell 8 is never closed"):
        _editions(_notebook(end_marker="The end."))


def test_the_set_up_cell_must_install_from_git():
    nb = _notebook()
    nb.cells[1].source = "print('no install')"
    with pytest.raises(EditionError, match=r"ch09_demo\.ipynb, cell 1: the first code cell should install"):
        _editions(nb)
    with pytest.raises(EditionError, match="not a commit hash"):
        make_edition(_notebook(), "reader", Page(glued={"acc": {"text/plain": "1"}}), commit="main")


def _with_hidden_code(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with a run-time cell whose code the book hides, one it removes, and one it folds."""
    code = nbformat.v4.new_code_cell
    shown = [nbformat.v4.new_output("display_data", data={"text/markdown": "Time to run: 1 min"})]
    nb.cells[2:2] = [
        code('from mnist_lessons.tools.run_times import show_run_time\n\nshow_run_time("ch09_demo")',
             metadata={"tags": ["remove-input"]}, outputs=shown, execution_count=1),
        code("hidden_helper = 'REMOVED-CELL'", metadata={"tags": ["remove-cell"]}, execution_count=2),
        code("# Plot the filters\nplot(1)", metadata={"tags": ["hide-input"]}, execution_count=3),
    ]
    return nb


def test_code_the_book_hides_becomes_a_form_cell_and_removed_cells_are_dropped():
    built = _editions(_with_hidden_code(_notebook()))
    for edition in ("reader", "student"):
        nb = built[edition]
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        setup, run_time, hidden = code[:3]
        assert setup.source.startswith("#@title ") and COMMIT in setup.source
        assert run_time.source.split("\n")[0] == "#@title Time to run this page"
        assert run_time.source.endswith('show_run_time("ch09_demo")')
        assert hidden.source.startswith("#@title Plot the filters\n# Plot the filters\nplot(1)")
        for cell in (setup, run_time, hidden):
            assert cell.metadata["cellView"] == "form", (edition, cell.source)
        assert run_time.outputs[0]["data"]["text/markdown"] == "Time to run: 1 min", "the output stays"
        assert "REMOVED-CELL" not in _everything(nb), f"{edition}: remove-cell cells are dropped"
        lesson = next(c for c in code if c.source == "print('lesson')")
        assert "cellView" not in lesson.metadata, "cells the book shows keep their code visible"
    instructor = built["instructor"]
    assert "REMOVED-CELL" in _everything(instructor), "the instructor edition keeps every cell"
    assert not any(c.source.startswith("#@title") and "Solution" not in c.source
                   for c in instructor.cells if c.cell_type == "code")


@pytest.mark.parametrize("source, title", [
    ("# Colab set-up: installs the package.\nimport sys", "Colab set-up: installs the package."),
    ('show_run_time("ch01")', "Time to run this page"),
    ("from x import show_run_time as s\nrun_times.show_run_time('a')", "Time to run this page"),
    ("x = 1\nprint(x)", editions.FORM_FALLBACK),
    ("#@title Old\nx = 1", editions.FORM_FALLBACK),
    ("not python (", editions.FORM_FALLBACK),
])
def test_form_titles_come_from_a_comment_or_the_function_called(source, title):
    assert editions.form_title(source) == title


def test_stubs_keep_signatures_and_docstrings_only():
    source = 'def f(x, y=2, *, z):\n    """Add."""\n    return x + y\n\n\ndef g(a):\n    return a\n'
    stub = stub_for(source)
    assert 'def f(x, y=2, *, z):\n    """Add."""\n    # your code here\n    raise NotImplementedError' in stub
    assert "def g(a):" in stub and "return" not in stub
    assert stub_for("print(1 + 1)") == "# your code here\nraise NotImplementedError"


def test_glued_values_come_from_the_build_and_from_outputs(tmp_path):
    nb = _notebook()
    nb.cells[3].outputs.append(nbformat.v4.new_output(
        "display_data", data={"application/papermill.record/text/plain": "'7'"},
        metadata={"scrapbook": {"name": "seven", "mime_prefix": "application/papermill.record/"}}))
    glue_json = tmp_path / "ch09_demo.glue.json"
    glue_json.write_text(json.dumps({"acc": {"output_type": "display_data", "data": {"text/plain": "'99.54%'"},
                                             "metadata": {"scrapbook": {"name": "acc", "mime_prefix": "x/"}}}}))
    assert glued_values(nb, glue_json) == {"acc": {"text/plain": "'99.54%'"}, "seven": {"text/plain": "'7'"}}
    reader = make_edition(nb, "reader", Page(glued=glued_values(nb, glue_json)), commit=COMMIT)
    assert all("scrapbook" not in o.get("metadata", {}) for c in reader.cells for o in c.get("outputs", []))


def test_the_parser_uses_the_books_myst_extensions():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert set(editions.MYST_EXTENSIONS) == set(config["parse"]["myst_enable_extensions"])


def test_command_writes_three_editions(tmp_path, capsys):
    executed = tmp_path / "executed"
    executed.mkdir()
    for name in ("ch09_demo", "ch10_demo", *editions.EXTRA_PAGES):
        nbformat.write(_notebook(), executed / f"{name}.ipynb")
        (executed / f"{name}.glue.json").write_text(json.dumps({"acc": {"data": {"text/plain": "1"}}}))
    assert main(["--executed", str(executed), "--out", str(tmp_path / "out"), "--commit", COMMIT]) == 0
    printed = capsys.readouterr().out
    assert "reader     4 notebooks" in printed and "student    2 notebooks" in printed
    assert sorted(p.name for p in (tmp_path / "out" / "student").iterdir()) == ["ch09_demo.ipynb", "ch10_demo.ipynb"]
    (executed / "ch10_demo.glue.json").unlink()
    assert main(["--executed", str(executed), "--out", str(tmp_path / "out"), "--commit", COMMIT]) == 1
    assert "ch10_demo.ipynb, cell 2: no value was glued under 'acc'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# The real run: the book's executed pages


def _oracle(path: Path) -> dict:
    """An independent reading of a source notebook: its solution code and text lines, and the
    glue names cited outside and inside solutions. A plain line scan of cell tags and directive
    names, nothing from the module under test."""
    fence = re.compile(r"^(`{3,}|:{3,})\{(solution-start|solution-end)\}")
    code, text, outside, inside_glue, public = [], [], set(), set(), []
    inside = in_marker = False
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            if inside or "solution" in cell.metadata.get("tags", []):
                code.append(cell.source)
            else:
                public.append(cell.source)
            continue
        for line in cell.source.splitlines():
            marker = fence.match(line)
            if marker:
                inside, in_marker, closing = marker.group(2) == "solution-start", True, marker.group(1)
                continue
            if in_marker:
                in_marker = line.strip() != closing
                continue
            names = set(re.findall(r"\{glue:text\}`([^`:]+)", line))
            (inside_glue if inside else outside).update(names)
            if inside:
                text.append(line)
            else:
                public.append(line)
    return {"code": code, "text": text, "glue_outside": outside, "glue_inside": inside_glue,
            "public": "\n".join(public)}


def _fragments(lines: list[str], min_length: int = 12) -> list[str]:
    """Solution lines cut at roles into pieces long enough to be telling."""
    pieces = []
    for line in lines:
        if line.lstrip().startswith(("def ", "@", '"""', "import ", "from ")):
            continue  # stubs keep signatures and docstrings; an import gives no answer away
        pieces += [p.strip() for p in ROLE.split(line) if len(p.strip()) > min_length]
    return pieces


def _glue_text(executed: Path, stem: str, name: str) -> str:
    bundle = json.loads((executed / f"{stem}.glue.json").read_text())[name]["data"]["text/plain"]
    try:
        return str(ast.literal_eval(bundle))
    except (SyntaxError, ValueError):
        return bundle


@pytest.fixture(scope="module")
def real_editions(executed_book, tmp_path_factory):
    out = tmp_path_factory.mktemp("editions")
    start = time.perf_counter()
    written = write_editions(executed_book, out, commit=COMMIT, book=ROOT / "book")
    print(f"\nthree editions of the book written in {time.perf_counter() - start:.1f} s")
    return {ed: {p.stem: nbformat.read(p, as_version=4) for p in paths} for ed, paths in written.items()}


def test_real_run_writes_every_page(real_editions):
    chapters = sorted(p.stem for p in SOURCES if p.stem.startswith("ch"))
    assert sorted(real_editions["student"]) == chapters
    for edition in ("reader", "instructor"):
        assert sorted(real_editions[edition]) == sorted(chapters + list(editions.EXTRA_PAGES))


def test_real_run_leaves_no_myst_in_any_notebook(real_editions):
    for edition, notebooks in real_editions.items():
        for stem, nb in notebooks.items():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type == "markdown":
                    html = COMMONMARK.render(cell.source)
                    left = MYST_LEFT.search(html)
                    assert not left, f"{edition}/{stem}, cell {i}: {left.group(0)!r} in {html[:300]}"


def test_real_run_puts_every_glued_value_in_the_text(real_editions, executed_book):
    for edition, notebooks in real_editions.items():
        for stem, nb in notebooks.items():
            oracle = _oracle(ROOT / "book" / f"{stem}.ipynb")
            names = oracle["glue_outside"] | (set() if edition == "student" else oracle["glue_inside"])
            html = "\n".join(COMMONMARK.render(c.source) for c in nb.cells if c.cell_type == "markdown")
            for name in names:
                value = _glue_text(executed_book, stem, name)
                assert f"{value}<sup>†</sup>" in html, f"{edition}/{stem}: {name} = {value!r} missing"
            assert ("<sup>†</sup>" in html) == ("computed when the book was built" in html)


def test_real_run_student_notebooks_contain_no_solution(real_editions):
    for stem, nb in real_editions["student"].items():
        oracle = _oracle(ROOT / "book" / f"{stem}.ipynb")
        everything = _everything(nb)
        pieces = _fragments(oracle["text"]) + _fragments([ln for src in oracle["code"] for ln in src.splitlines()])
        assert oracle["code"] and oracle["text"] and pieces, f"{stem} has solutions"
        for piece in pieces:
            if piece in oracle["public"]:
                continue  # the page itself shows this line outside any solution: it gives nothing away
            assert piece not in everything, f"student/{stem} leaks: {piece}"
        instructor = _everything(real_editions["instructor"][stem])
        for piece in pieces:
            assert piece in instructor, f"instructor/{stem} lost: {piece}"
        stubs = [c for c in nb.cells if STUB_TAG in c.metadata.get("tags", [])]
        assert len(stubs) == len(oracle["code"]) and all("raise NotImplementedError" in c.source for c in stubs)
        assert any(re.search(r"^check_\w+\(", c.source, re.M) for c in nb.cells), "the checks stay"


def test_real_run_reader_folds_solutions(real_editions):
    for stem, nb in real_editions["reader"].items():
        oracle = _oracle(ROOT / "book" / f"{stem}.ipynb")
        code_cells = {c.source: c for c in nb.cells if c.cell_type == "code"}
        for source in oracle["code"]:
            cell = code_cells.get(f"#@title Solution\n{source}")
            assert cell is not None, f"reader/{stem}: solution not titled: {source[:60]}"
            assert cell.metadata.get("cellView") == "form" and not cell.outputs
        details = "\n".join(m for c in nb.cells if c.cell_type == "markdown"
                            for m in re.findall(r"<details>.*?</details>", c.source, re.S))
        for piece in _fragments(oracle["text"]):
            assert piece in details, f"reader/{stem}: solution text outside <details>: {piece}"
        if oracle["text"]:
            assert "<summary><b>Solution</b></summary>" in details


def test_real_run_pins_the_set_up_cell_to_the_commit(real_editions):
    for edition, notebooks in real_editions.items():
        for stem, nb in notebooks.items():
            setup = next(c for c in nb.cells if c.cell_type == "code")
            assert f"git+https://github.com/mnist-lessons/mnist-lessons@{COMMIT}" in setup.source, (edition, stem)
            assert "@main" not in setup.source


def test_real_run_shows_no_hidden_code_in_colab(real_editions, executed_book):
    """Every cell the book shows without its code is a form cell in the reader and student
    editions; the set-up cell is one too; no other cell the book removes is left."""
    for edition in ("reader", "student"):
        for stem, nb in real_editions[edition].items():
            executed = nbformat.read(executed_book / f"{stem}.ipynb", as_version=4)
            hidden = [c.source for c in executed.cells if c.cell_type == "code"
                      and {"remove-input", "hide-input"} & set(c.metadata.get("tags", []))]
            assert hidden, f"{stem}: at least the run-time cell hides its code"
            code = [c for c in nb.cells if c.cell_type == "code"]
            assert code[0].metadata.get("cellView") == "form" and code[0].source.startswith("#@title ")
            for source in hidden:
                cell = next((c for c in code if c.source.endswith("\n" + source)), None)
                assert cell is not None, f"{edition}/{stem}: hidden cell missing: {source[:60]}"
                assert cell.source.startswith("#@title ") and cell.metadata.get("cellView") == "form"
            assert any(c.source.startswith("#@title Time to run this page\n") for c in code), stem
            removed = [c.source for c in [c for c in executed.cells if c.cell_type == "code"][1:]
                       if "remove-cell" in c.metadata.get("tags", [])]  # all but the set-up cell
            for source in removed:
                assert not any(c.source.endswith(source) for c in code[1:]), (edition, stem)


def test_real_run_reader_keeps_the_books_outputs(real_editions, executed_book):
    figures = 0
    for stem, nb in real_editions["reader"].items():
        executed = nbformat.read(executed_book / f"{stem}.ipynb", as_version=4)
        solutions = _oracle(ROOT / "book" / f"{stem}.ipynb")["code"]
        shown = [o for c in executed.cells if c.cell_type == "code" and c.source not in solutions
                 and "remove-output" not in c.metadata.get("tags", []) for o in c.outputs
                 if o.get("name") != "stderr"]
        kept = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert kept == shown, f"reader/{stem}: the book's outputs were not kept as they are"
        figures += sum("image/png" in o.get("data", {}) for o in kept)
    assert figures >= 20, figures
