"""The package a student reads: the lesson API at the top, the book's own tooling apart."""

from __future__ import annotations

import ast
from pathlib import Path

import mnist_lessons

PACKAGE = Path(mnist_lessons.__file__).parent
LESSON_MODULES = {"config", "runtime", "data", "model", "train", "evaluate", "checkpoints",
                  "numpy_ops", "viz", "widgets", "exercises", "complete_code", "preprocess"}
TOOLING = {"glue", "run_times", "editions", "files", "course_model", "web_model", "grade", "grade_codec",
           "otter_export"}


def test_top_level_holds_only_the_lesson_modules():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == LESSON_MODULES
    tools = {p.stem for p in (PACKAGE / "tools").glob("*.py")} - {"__init__"}
    assert tools and tools <= TOOLING


def test_no_lesson_module_imports_the_book_tooling_except_to_write_files():
    """Lesson code may use the atomic file writer; it never needs glue, editions or timings."""
    for name in LESSON_MODULES:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and "tools" in node.module.split("."):
                assert node.module.endswith("tools.files"), f"{name} imports {node.module}"


def test_presets_live_with_the_hyperparameters_not_in_the_cache_module():
    from mnist_lessons import checkpoints, model

    for preset in ("COURSE_DEFAULTS", "ARTICLE_SETUP", "CORRECTED_SETUP", "ADAM_ONE_EPOCH",
                   "SGD_ONE_EPOCH", "FAST_TO_99"):
        assert isinstance(getattr(model, preset), model.Hyperparameters)
        assert f"{preset} = " not in (PACKAGE / "checkpoints.py").read_text()
    assert checkpoints.COURSE_DEFAULTS is model.COURSE_DEFAULTS
