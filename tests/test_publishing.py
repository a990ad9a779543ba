"""The publishing workflow builds the book with the README's own command."""

from __future__ import annotations

import re
from pathlib import Path

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
    assert runs == [_readme_commands()[0]]
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
