"""The publishing workflow builds the book with the README's own command, and publishes the
editions made from that build: the reader edition on the branch the Colab buttons open."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The Pythons the Makefile accepts (tests/test_environment.py runs its check on each).
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick_start, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_quick_start_has_exactly_two_commands():
    assert _readme_commands() == ["make book", "make test"]


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", script, re.M)


def _workflow() -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())


def _job_python(job: dict) -> str:
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    return str(python["with"]["python-version"])


def test_pages_workflow_builds_with_the_readme_book_command_and_deploys_the_html():
    workflow = _workflow()
    steps = workflow["jobs"]["build"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert runs[0] == _readme_commands()[0]
    assert _job_python(workflow["jobs"]["build"]) in SUPPORTED_PYTHONS
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]["steps"]
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in deploy)


def _needs(job: dict) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def _upstream(jobs: dict, name: str) -> set[str]:
    """Every job that must succeed before ``name`` starts (``needs:``, followed through)."""
    seen: set[str] = set()
    todo = _needs(jobs[name])
    while todo:
        job = todo.pop()
        if job not in seen:
            seen.add(job)
            todo += _needs(jobs[job])
    return seen


def test_pages_workflow_deploys_only_after_the_readme_test_command_passes():
    jobs = _workflow()["jobs"]
    testing = [name for name, job in jobs.items()
               if any(s.get("run", "").strip() in ("bash .ci/run", _readme_commands()[1])
                      for s in job.get("steps", []))]
    assert testing, "a job runs the README's test command (bash .ci/run or make test)"
    deploying = [name for name, job in jobs.items()
                 if any(s.get("uses", "").startswith("actions/deploy-pages") for s in job["steps"])]
    assert deploying
    for deploy in deploying:
        assert set(testing) <= _upstream(jobs, deploy), f"{deploy} needs the tests to pass first"
        # The book artifact that is deployed was built after the tests, too.
        assert "build" in _upstream(jobs, deploy) and set(testing) <= _upstream(jobs, "build")
    for name in testing:
        assert _job_python(jobs[name]) in SUPPORTED_PYTHONS


def test_book_address_in_readme_matches_the_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    owner, repo = config["repository"]["url"].rstrip("/").split("/")[-2:]
    readme = (ROOT / "README.md").read_text()
    assert f"https://{owner}.github.io/{repo}/" in readme


# ----------------------------------------------------------------------------------------------
# The editions: made from the build, pinned to the built commit, published


CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
EDITIONS_COMMAND = re.compile(r"python -m mnist_lessons\.tools\.editions\b(.*)")


def _step_index(steps: list[dict], predicate) -> int:
    return next(i for i, s in enumerate(steps) if predicate(s))


def test_pages_workflow_makes_the_editions_of_the_built_commit_after_the_build():
    steps = _workflow()["jobs"]["build"]["steps"]
    build = _step_index(steps, lambda s: s.get("run") == "make book")
    editions = _step_index(steps, lambda s: bool(EDITIONS_COMMAND.search(s.get("run", ""))))
    args = EDITIONS_COMMAND.search(steps[editions]["run"]).group(1).replace("${{ github.sha }}", "SHA").split()
    assert build < editions, "the editions are made from the pages the build executed"
    assert args[args.index("--commit") + 1] == "SHA", "pinned to the commit built (${{ github.sha }})"
    assert args[args.index("--executed") + 1] == "_build/jupyter_execute/book"
    assert args[args.index("--out") + 1] == "editions"
    upload = _step_index(steps, lambda s: s.get("uses", "").startswith("actions/upload-pages-artifact"))
    layout = _step_index(steps, lambda s: "_build/html/editions" in s.get("run", ""))
    assert editions < layout < upload, "the zip files are in the site that is uploaded"


def _colab_job() -> tuple[str, dict, dict]:
    jobs = _workflow()["jobs"]
    found = [(name, job, step) for name, job in jobs.items() for step in job.get("steps", [])
             if step.get("uses", "").startswith("peaceiris/actions-gh-pages@")]
    assert len(found) == 1, "one step publishes the colab branch"
    return found[0]


def test_pages_workflow_publishes_the_editions_to_the_branch_the_colab_buttons_open():
    name, job, publish = _colab_job()
    jobs = _workflow()["jobs"]
    branch = CONFIG["sphinx"]["config"]["colab_launch_branch"]
    assert branch == "colab" != CONFIG["repository"]["branch"]
    assert publish["with"]["publish_branch"] == branch
    assert publish["with"]["github_token"] == "${{ secrets.GITHUB_TOKEN }}"
    assert job["permissions"] == {"contents": "write"}, "only this job may push"
    assert _workflow()["permissions"]["contents"] == "read"
    assert {"build", "test"} <= _upstream(jobs, name), "published only after the tests pass"
    # What is published is what the build laid out: the artifact, downloaded where published.
    download = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    upload = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert download["with"]["name"] == upload["with"]["name"]
    assert download["with"]["path"] == publish["with"]["publish_dir"]
    assert upload["with"]["path"] == "_build/colab"


@pytest.mark.skipif(shutil.which("zip") is None, reason="the layout step needs zip")
def test_the_layout_step_puts_the_reader_edition_at_the_books_paths(tmp_path):
    """Run the workflow's own layout step on three small editions and look at what it made:
    the colab branch's tree, and the zip files the site offers."""
    steps = _workflow()["jobs"]["build"]["steps"]
    script = next(s["run"] for s in steps if "_build/html/editions" in s.get("run", ""))
    chapters = ["ch01_importing_tensorflow", "ch02_the_mnist_dataset"]
    for edition, pages in (("reader", chapters + ["complete_code"]), ("student", chapters),
                           ("instructor", chapters + ["complete_code"])):
        (tmp_path / "editions" / edition).mkdir(parents=True)
        for page in pages:
            (tmp_path / "editions" / edition / f"{page}.ipynb").write_text(f"{edition} {page}")
    (tmp_path / "_build" / "html").mkdir(parents=True)
    script = script.replace("${{ github.sha }}", "0123abc")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    branch = tmp_path / "_build" / "colab"
    for page in chapters + ["complete_code"]:  # the paths of main, as the Colab buttons use them
        assert (branch / "book" / f"{page}.ipynb").read_text() == f"reader {page}"
        assert (ROOT / "book" / f"{page}.ipynb").exists()
    assert sorted(p.name for p in (branch / "student").iterdir()) == [f"{c}.ipynb" for c in chapters]
    assert (branch / "instructor" / "complete_code.ipynb").read_text() == "instructor complete_code"
    assert "0123abc" in (branch / "README.md").read_text()
    for edition in ("student", "instructor"):
        with zipfile.ZipFile(tmp_path / "_build" / "html" / "editions" / f"{edition}.zip") as archive:
            names = sorted(n for n in archive.namelist() if n.endswith(".ipynb"))
            assert names == sorted(f"{edition}/{p.name}" for p in (tmp_path / "editions" / edition).iterdir())


def test_readme_badge_opens_the_reader_edition_of_chapter_one():
    readme = (ROOT / "README.md").read_text()
    badge = re.search(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)]*)\)", readme)
    owner_repo = "/".join(CONFIG["repository"]["url"].rstrip("/").split("/")[-2:])
    branch = CONFIG["sphinx"]["config"]["colab_launch_branch"]
    assert badge and badge.group(1) == (f"https://colab.research.google.com/github/{owner_repo}/blob/"
                                        f"{branch}/book/ch01_importing_tensorflow.ipynb")


def test_make_editions_runs_the_editions_command_with_the_given_commit():
    done = subprocess.run(["make", "-n", "editions", "COMMIT=0123abc"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    command = " ".join(done.stdout.replace("\\\n", " ").split())
    assert ("python -m mnist_lessons.tools.editions --executed _build/jupyter_execute/book --out editions "
            "--commit 0123abc") in command
