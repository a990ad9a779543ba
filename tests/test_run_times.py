"""The run times each page states: formatting, the shipped record, and the recorder itself."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mnist_lessons.tools.run_times import (
    RUN_TIMES_FILE,
    describe_run_time,
    format_seconds,
    load_run_times,
    record_run_times,
    run_times_table,
    time_notebook,
)

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(ROOT.glob("book/*.ipynb"))

CPU_ONLY = {
    "cpu": {"device": "a 2-core CPU", "date": "2026-11-25", "profile": "full",
            "pages": {"ch05_reshaping": {"first": 3.7, "later": 3.6},
                      "ch06_the_convolutional_layer": {"first": 159.4, "later": 7.2}}},
    "gpu": None,
}


@pytest.mark.parametrize("seconds, text", [
    (0.2, "1 s"), (3.6, "4 s"), (59.4, "59 s"), (60, "1 min"), (159.4, "2 min 39 s"),
    (3600, "1 h"), (3780, "1 h 3 min"),
])
def test_format_seconds_reads_like_a_person_says_it(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.parametrize("bad", [-1, None, "3", True])
def test_format_seconds_rejects_what_is_not_a_duration(bad):
    with pytest.raises(ValueError, match="non-negative number"):
        format_seconds(bad)


def test_a_page_that_trains_states_both_the_cached_and_the_fresh_time():
    text = describe_run_time("ch06_the_convolutional_layer", CPU_ONLY)
    assert text.startswith("**Time to run this page:** about 7 s on a CPU once")
    assert "2 min 39 s on a fresh runtime" in text
    assert "measured on a 2-core CPU, 2026-11-25" in text
    assert text.endswith("On a GPU: not measured yet for this edition.")


def test_a_page_that_does_not_train_states_one_time():
    text = describe_run_time("ch05_reshaping", CPU_ONLY)
    assert "about 4 s on a CPU (measured" in text and "fresh" not in text


def test_a_page_missing_from_the_record_says_how_to_record_it():
    with pytest.raises(KeyError, match="python -m mnist_lessons.tools.run_times record"):
        describe_run_time("ch99_nowhere", CPU_ONLY)


def test_a_broken_record_gives_a_clear_error(tmp_path):
    bad = tmp_path / "run_times.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="remake the file"):
        load_run_times(bad)
    bad.write_text(json.dumps({"cpu": None}))
    with pytest.raises(ValueError, match="exactly the keys"):
        load_run_times(bad)


def test_table_has_a_row_per_page_and_says_what_was_not_measured():
    table = run_times_table({"ch05_reshaping": "5. Reshaping",
                             "ch06_the_convolutional_layer": "6. Convolution"}, CPU_ONLY)
    lines = table.splitlines()
    assert lines[0] == "| Page | CPU, cached | CPU, fresh runtime | GPU, cached | GPU, fresh runtime |"
    assert lines[2] == "| 5. Reshaping | 4 s | 4 s | not measured | not measured |"
    assert lines[3] == "| 6. Convolution | 7 s | 2 min 39 s | not measured | not measured |"
    assert lines[5:] == ["- CPU: measured on a 2-core CPU, 2026-11-25.",
                         "- GPU: not measured yet for this edition."]


def test_the_shipped_record_times_every_page_of_the_book_on_a_cpu():
    times = load_run_times(RUN_TIMES_FILE)
    assert times["cpu"] is not None, "record it: python -m mnist_lessons.tools.run_times record"
    assert times["cpu"]["profile"] == "full"
    assert sorted(times["cpu"]["pages"]) == [p.stem for p in PAGES]
    for page, measured in times["cpu"]["pages"].items():
        assert 0 < measured["later"] and 0 < measured["first"], page
        describe_run_time(page, times)  # every page can state its time


@pytest.mark.parametrize("nb", PAGES, ids=lambda p: p.stem)
def test_every_page_states_its_own_run_time_near_the_top(nb):
    cells = nbformat.read(nb, as_version=4).cells
    stating = [i for i, c in enumerate(cells) if "show_run_time(" in c.source]
    assert len(stating) == 1 and stating[0] <= 4, nb.name
    cell = cells[stating[0]]
    assert cell.cell_type == "code" and f'show_run_time("{nb.stem}")' in cell.source
    assert "remove-input" in cell.metadata.get("tags", [])  # readers see the sentence only


def _tiny_notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_recorder_times_each_page_fresh_then_cached_with_its_own_cache(tmp_path):
    # The page writes the cache folder it was given, so we can see both runs used one of its own.
    page = _tiny_notebook(tmp_path / "demo.ipynb", (
        "import os, pathlib\n"
        "cache = pathlib.Path(os.environ['MNIST_LESSONS_CACHE'])\n"
        "assert (cache / 'mnist.npz').exists() and os.environ['MNIST_LESSONS_PROFILE'] == 'full'\n"
        "with open(pathlib.Path.cwd() / 'runs.txt', 'a') as f:\n"
        "    f.write(str(cache) + ' ' + str((cache / 'trained').exists()) + '\\n')\n"
        "(cache / 'trained').touch()\n"))
    out = tmp_path / "run_times.json"
    out.write_text(json.dumps({"cpu": None, "gpu": {"device": "kept", "date": "", "profile": "full",
                                                   "pages": {}}}))
    record = record_run_times([page], out, log=lambda line: None)
    runs = (tmp_path / "runs.txt").read_text().split()
    assert runs[0] == runs[2] and runs[1:4:2] == ["False", "True"]  # same cache: empty, then warm
    assert runs[0] != str(Path.home() / ".cache" / "mnist_lessons")
    assert json.loads(out.read_text()) == record
    assert record["gpu"]["device"] == "kept"  # a CPU run leaves the GPU entry alone
    measured = record["cpu"]["pages"]["demo"]
    assert 0 < measured["first"] < 120 and 0 < measured["later"] < 120


def test_a_failing_page_is_named_when_timed(tmp_path):
    page = _tiny_notebook(tmp_path / "broken.ipynb", "1 / 0")
    with pytest.raises(RuntimeError, match="broken.ipynb failed"):
        time_notebook(page, {})


def test_page_titles_list_chapters_in_order_then_the_other_pages():
    from mnist_lessons.tools.run_times import page_titles

    titles = page_titles(ROOT / "book")
    assert list(titles)[:2] == ["ch01_importing_tensorflow", "ch02_the_mnist_dataset"]
    assert list(titles)[-2:] == ["article_errata", "complete_code"]
    assert titles["ch06_the_convolutional_layer"] == "6. The convolutional layer"
    assert len(titles) == len(PAGES)
