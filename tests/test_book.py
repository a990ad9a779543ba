"""The book's structure: table of contents, configuration, and the notebooks themselves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted(BOOK.glob("ch*.ipynb"))          # the chapters, one per step of the article
ALL_NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))        # chapters and the other executed pages
CHAPTER_FILE = re.compile(r"ch(\d\d)_\w+\.ipynb")


def _toc_files() -> list[str]:
    return [ch["file"] for part in TOC["parts"] for ch in part["chapters"]]


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def test_toc_lists_every_chapter_in_the_articles_order_and_nothing_missing():
    files = _toc_files()
    assert all((ROOT / f).with_suffix(".ipynb").exists() or (ROOT / f).with_suffix(".md").exists()
               for f in files), "no empty pages"
    chapters = [f for f in files if CHAPTER_FILE.fullmatch(Path(f).name + ".ipynb")]
    assert sorted(f"book/{p.stem}" for p in NOTEBOOKS) == sorted(chapters), "every chapter is listed"
    pages = {p.relative_to(ROOT).with_suffix("").as_posix() for p in [*BOOK.glob("*.md"), *ALL_NOTEBOOKS]}
    assert pages - {TOC["root"]} <= set(files), "every page is in the table of contents"
    numbers = [int(CHAPTER_FILE.fullmatch(Path(f).name + ".ipynb").group(1)) for f in chapters]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert (ROOT / TOC["root"]).with_suffix(".md").exists()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_title_matches_its_step_number(nb):
    number = int(CHAPTER_FILE.fullmatch(nb.name).group(1))
    first = _cells(nb)[0]
    assert first["cell_type"] == "markdown"
    assert re.match(rf"# {number}\. \S", _source(first)), _source(first)[:60]


@pytest.mark.parametrize("nb", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(nb):
    for cell in _cells(nb):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_every_chapter_starts_with_the_same_colab_setup_cell_for_the_configured_repo():
    setups = []
    for nb in ALL_NOTEBOOKS:
        code = [c for c in _cells(nb) if c["cell_type"] == "code"]
        setups.append(code[0])
        assert "remove-cell" in code[0]["metadata"].get("tags", []), nb.name
    assert len({_source(c) for c in setups}) == 1, "the set-up cell differs between chapters"
    text = _source(setups[0])
    assert 'if "google.colab" in sys.modules:' in text  # does nothing outside Colab
    url = re.search(r"git\+(https://\S+?)(?:@(\S+?))?\"", text)
    assert url, text
    assert url.group(1) == CONFIG["repository"]["url"]
    assert url.group(2) == CONFIG["repository"]["branch"]


def test_setup_cell_does_nothing_outside_colab():
    nb = NOTEBOOKS[0]
    code = next(c for c in _cells(nb) if c["cell_type"] == "code")
    never_install = "import subprocess\nsubprocess.run = None  # any install attempt would fail\n"
    done = subprocess.run([sys.executable, "-c", never_install + _source(code)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


def test_config_executes_every_chapter_and_fails_on_errors():
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] in ("cache", "force")
    assert execute["allow_errors"] is False and execute["timeout"] >= 600
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["repository"]["url"].startswith("https://github.com/")


def test_package_dependencies_never_pin_tensorflow_for_colab():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        assert not dep.lower().startswith(("tensorflow", "keras")), dep
        assert "==" not in dep and "<" not in dep, f"{dep} could replace Colab's packages"


def test_intro_links_every_existing_chapter():
    intro = (BOOK / "intro.md").read_text()
    for nb in ALL_NOTEBOOKS:
        assert f"{{doc}}`{nb.stem}`" in intro, nb.stem


TEACHING_TAG = "checked-definition"  # a teaching cell whose functions a test compares with the package's


def test_no_chapter_cell_defines_functions_or_classes_of_its_own():
    # Reusable logic lives in mnist_lessons/ with tests; chapters call it. The exceptions: the
    # solutions of exercises (cells tagged "solution"), a function decorated with @tf.function,
    # shown as a TensorFlow feature in chapter 1, and a teaching cell (tagged "checked-definition")
    # that defines the code it explains so the reader can read and run it: the next test checks
    # that a test compares each of those functions with the package's.
    for nb in ALL_NOTEBOOKS:
        for cell in _cells(nb):
            tags = cell["metadata"].get("tags", [])
            if cell["cell_type"] != "code" or "solution" in tags or TEACHING_TAG in tags:
                continue
            for match in re.finditer(r"^(@tf\.function\n)?(?:def|class) (\w+)", _source(cell), re.M):
                assert match.group(1), f"{nb.name} defines {match.group(2)}: move it to mnist_lessons"


def test_every_function_a_teaching_cell_defines_is_checked_by_a_test():
    tests = {p.name: p.read_text() for p in (ROOT / "tests").glob("test_*.py")}
    for nb in ALL_NOTEBOOKS:
        for cell in _cells(nb):
            if cell["cell_type"] != "code" or TEACHING_TAG not in cell["metadata"].get("tags", []):
                continue
            names = re.findall(r"^(?:def|class) (\w+)", _source(cell), re.M)
            assert names, f"{nb.name}: a {TEACHING_TAG} cell that defines nothing"
            for name in names:
                checking = [t for t, text in tests.items() if nb.stem in text and re.search(rf"\b{name}\b", text)]
                assert checking, (f"{nb.name} defines {name} in a teaching cell, but no test names both "
                                  f"the page and {name}: add one that compares it with the package's")


def _run_setup_cell_as_in_colab(monkeypatch, package_installed: bool,
                                 pip_fails: bool = False) -> list[list[str]]:
    """Run the set-up cell as Colab would, recording the commands it starts instead of running
    them. (tests/test_colab.py runs it for real, in a Colab-like environment.)"""
    nb = NOTEBOOKS[0]
    source = next(_source(c) for c in _cells(nb) if c["cell_type"] == "code")
    calls: list[list[str]] = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1 if pip_fails else 0, "", "ERROR: no network")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    if not package_installed:
        monkeypatch.setitem(sys.modules, "mnist_lessons", None)  # import now fails
    exec(compile(source, "setup-cell", "exec"), {})
    return calls


def test_setup_cell_in_colab_installs_the_package_from_the_configured_repo(monkeypatch, capsys):
    calls = _run_setup_cell_as_in_colab(monkeypatch, package_installed=False)
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert len(calls) == 1 and calls[0][:4] == [sys.executable, "-m", "pip", "install"]
    assert calls[0][-1] == f"mnist-lessons @ git+{url}@{branch}" and "--quiet" in calls[0]
    assert capsys.readouterr() == ("", "")


def test_setup_cell_in_colab_is_idempotent_and_quiet(monkeypatch, capsys):
    assert _run_setup_cell_as_in_colab(monkeypatch, package_installed=True) == []
    assert capsys.readouterr() == ("", "")


def test_setup_cell_explains_a_failed_install(monkeypatch):
    with pytest.raises(RuntimeError, match="connected to the internet") as err:
        _run_setup_cell_as_in_colab(monkeypatch, package_installed=False, pip_fails=True)
    assert "ERROR: no network" in str(err.value)  # pip's own reason, at the end


def test_pages_that_wait_for_others_in_the_build_name_pages_of_the_book():
    """book/_ext/parallel_execution.py starts a page named in ``parallel_execution_after`` only
    when the pages it names are done; a misspelt name would silently wait for nothing."""
    after = CONFIG["sphinx"]["config"]["parallel_execution_after"]
    pages = {p.with_suffix("").relative_to(ROOT).as_posix() for p in (ROOT / "book").glob("*.ipynb")}
    assert after and set(after) <= pages
    for page, before in after.items():
        assert before and set(before) <= pages - {page}, page
    # what it is there for: the errata page loads the models chapter 10's ablation trains
    errata = (ROOT / "book" / "article_errata.ipynb").read_text()
    ch10 = (ROOT / "book" / "ch10_training_with_adam.ipynb").read_text()
    for setup in ("ARTICLE_SETUP, dropout_at_inference=True", "CORRECTED_SETUP"):
        assert f"trained_model({setup}" in errata and f"trained_model({setup}" in ch10
