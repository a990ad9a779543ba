"""Every page runs in a clean Colab-like environment, starting from the notebook alone.

What "Colab-like" means here, since Colab itself cannot be reached from CI:

- a fresh virtual environment on Python 3.12, as Colab's, holding only what a Colab runtime
  already has and the course uses: TensorFlow (the ``tensorflow`` package, not the CPU-only
  build), Keras, NumPy, Matplotlib, ipywidgets 7.7 (Colab's) and the IPython kernel, at the
  versions of the lock file requirements.txt where Colab's do not differ, installed with uv.
  No ``mnist_lessons``, no Jupyter Book, no pytest. Skipped when no Python 3.12 is found;
- a kernel that has imported ``google.colab`` before the first cell runs, as Colab's does (an
  IPython start-up file imports a stand-in module);
- each notebook copied alone into an empty folder, so nothing of the repository is importable,
  and an empty course cache, so the page fetches MNIST and trains what it needs itself;
- the set-up cell runs unchanged. Its ``git+https://github.com/...`` address is served from a
  snapshot of this working tree through git's ``url.<base>.insteadOf``, because GitHub is out
  of reach here; pip, the install and the import are the real ones.

Training uses the CI profile whatever the calling environment says: this checks the
environment, not the accuracy, which the other tests check with the real settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
PAGES = sorted(ROOT.glob("book/*.ipynb"))
# What a Colab runtime has before the set-up cell runs (the course's share of it), at the lock's
# versions, except where Colab's own differ (COLAB_VERSIONS). Colab has the full `tensorflow`
# package (GPU-capable; on a machine without a GPU it runs on the CPU), not `tensorflow-cpu`.
COLAB_PREINSTALLED = ("tensorflow", "keras", "numpy", "matplotlib", "ipywidgets", "ipykernel")
COLAB_VERSIONS = {"ipywidgets": "7.7.1"}
COLAB_PYTHON = "3.12"

pytestmark = pytest.mark.slow


def _lock() -> list[Requirement]:
    """Every requirement of the lock file: hashes, comments and continuation lines dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "requirements.txt").read_text())
    lines = (re.split(r"\s--|#", line)[0].strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def _pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` from the lock for each name; where the lock has several (one per
    platform or Python), the one whose marker applies here, else the first."""
    pins: dict[str, str] = {}
    for req in _lock():
        name = canonicalize_name(req.name)
        if name not in pins or req.marker is None or req.marker.evaluate():
            pins[name] = f"{name}=={next(iter(req.specifier)).version}"
    return [pins[canonicalize_name(name)] for name in names]


def _colab_python() -> str | None:
    """A Python like Colab's: ``python3.12`` on PATH if it runs, else pyenv's, else None."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [shutil.which(f"python{COLAB_PYTHON}"),
             *map(str, sorted(pyenv.glob(f"versions/{COLAB_PYTHON}.*/bin/python{COLAB_PYTHON}")))]
    wanted = tuple(map(int, COLAB_PYTHON.split(".")))
    for python in filter(None, found):
        check = subprocess.run([python, "-c", f"import sys; sys.exit(sys.version_info[:2] != {wanted})"],
                               capture_output=True)
        if check.returncode == 0:
            return python
    return None


def _build_colab_venv(venv: Path, base_python: str) -> Path:
    """Create the Colab-like virtual environment: the standard library's venv (pip included, as
    Colab has it), then uv installs COLAB_PREINSTALLED, the rest of what they need held to the
    lock's versions where the lock has them. Returns the environment's Python."""
    _run([base_python, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    # Not held to the lock: TensorFlow (pinned below, the lock's CPU-only build left out) and
    # what Colab has at its own versions, with ipywidgets 7's companion packages.
    free = {"tensorflow", "tensorflow-cpu", "widgetsnbextension", "jupyterlab-widgets",
            *map(canonicalize_name, COLAB_VERSIONS)}
    constraints = venv / "lock-constraints.txt"
    constraints.write_text("".join(f"{req}\n" for req in _lock()
                                   if canonicalize_name(req.name) not in free))
    wanted = [f"{name}=={COLAB_VERSIONS[name]}" if name in COLAB_VERSIONS else pin
              for name, pin in zip(COLAB_PREINSTALLED, _pins(COLAB_PREINSTALLED))]
    _run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(python),
          "--constraint", str(constraints), *wanted], timeout=1800)
    return python


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _snapshot_working_tree(dest: Path) -> str:
    """Commit the working tree (tracked and new files, as they are now) to a repo on ``main``."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  cwd=ROOT).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=CI", "-c", "user.email=ci@localhost"]
    _run(git + ["init", "--quiet", "--initial-branch", CONFIG["repository"]["branch"]], cwd=dest)
    _run(git + ["add", "--all"], cwd=dest)
    _run(git + ["commit", "--quiet", "--message", "snapshot of the working tree"], cwd=dest)
    return _run(["git", "rev-parse", "HEAD"], cwd=dest).stdout.strip()


@dataclass
class ColabLike:
    root: Path
    venv_python: Path
    commit: str
    env: dict[str, str]

    def fresh_folder(self, name: str) -> Path:
        folder = self.root / "runs" / name
        folder.mkdir(parents=True)
        return folder

    def execute(self, nb: nbformat.NotebookNode, folder: Path, *, allow_errors: bool = False,
                extra_env: dict[str, str] | None = None) -> nbformat.NotebookNode:
        """Run ``nb`` in a new Colab-like kernel started in ``folder``, with an empty cache."""
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient

        specs = KernelSpecManager(kernel_dirs=[str(self.root / "kernels")])
        km = KernelManager(kernel_name="colab-like", kernel_spec_manager=specs)
        env = {**self.env, "MNIST_LESSONS_CACHE": str(folder / "cache"), **(extra_env or {})}
        NotebookClient(nb, km=km, timeout=1800, allow_errors=allow_errors,
                       resources={"metadata": {"path": str(folder)}}).execute(env=env)
        return nb


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> ColabLike:
    root = tmp_path_factory.mktemp("colab")
    repo = root / "repo"
    repo.mkdir()
    commit = _snapshot_working_tree(repo)

    base_python = _colab_python()
    if base_python is None:
        pytest.skip(f"no Python {COLAB_PYTHON} found (Colab's): put python{COLAB_PYTHON} on PATH "
                    "to run every page in a Colab-like environment")
    venv = root / "venv"
    python = _build_colab_venv(venv, base_python)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                     ).stdout.strip())
    # google/ is a namespace package (protobuf lives there too): add colab/ without __init__.py.
    (site / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (site / "google" / "colab" / "__init__.py").write_text(
        '"""Stand-in for Colab\'s module: the course only checks that it was imported."""\n')
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # as Colab's kernel does\n")

    gitconfig = root / "gitconfig"
    gitconfig.write_text(f'[url "file://{repo}"]\n\tinsteadOf = {CONFIG["repository"]["url"]}\n')

    kernel = root / "kernels" / "colab-like"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))

    # The kernel's environment: nothing of this test run's virtual environment or settings.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MNIST_LESSONS_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "IPYTHON",
                                "MPLBACKEND", "GIT_"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(sys.prefix) not in Path(p).parents]
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *path]), VIRTUAL_ENV=str(venv),
               IPYTHONDIR=str(root / "ipython"), GIT_CONFIG_GLOBAL=str(gitconfig),
               GIT_CONFIG_NOSYSTEM="1", MNIST_LESSONS_PROFILE="ci")
    return ColabLike(root=root, venv_python=python, commit=commit, env=env)


def _setup_source() -> str:
    nb = nbformat.read(PAGES[0], as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)


def test_setup_cell_installs_from_the_repository_quietly_and_only_once(colab):
    _run([str(colab.venv_python), "-m", "pip", "uninstall", "--yes", "--quiet", "mnist-lessons"])
    nb = colab.execute(_notebook(
        _setup_source(),
        "import importlib.metadata, json, sys, mnist_lessons\n"
        "print(mnist_lessons.__file__)\n"
        "print(importlib.metadata.distribution('mnist-lessons').read_text('direct_url.json'))",
        # From here on, any call to pip would fail the cell: the second run must not install.
        "import subprocess\n"
        "def no_pip(*args, **kwargs):\n"
        "    raise AssertionError('the set-up cell ran pip again')\n"
        "subprocess.run = no_pip",
        _setup_source(),
    ), colab.fresh_folder("setup"))
    first, check, _, again = nb.cells
    assert first.outputs == [] and again.outputs == [], "the set-up cell prints nothing"
    installed, direct_url = _text(check).split("\n", 1)
    assert installed.startswith(str(colab.root / "venv")), installed  # the venv, not the repo
    origin = json.loads(direct_url)
    assert origin["url"] == CONFIG["repository"]["url"]
    assert origin["vcs_info"]["requested_revision"] == CONFIG["repository"]["branch"]
    assert origin["vcs_info"]["commit_id"] == colab.commit


def test_setup_cell_says_what_to_do_when_the_install_fails(colab, tmp_path):
    _run([str(colab.venv_python), "-m", "pip", "uninstall", "--yes", "--quiet", "mnist-lessons"])
    nowhere = tmp_path / "gitconfig"
    nowhere.write_text(f'[url "file://{tmp_path}/no-such-repo"]\n'
                       f'\tinsteadOf = {CONFIG["repository"]["url"]}\n')
    nb = colab.execute(_notebook(_setup_source()), colab.fresh_folder("offline"),
                       allow_errors=True, extra_env={"GIT_CONFIG_GLOBAL": str(nowhere)})
    errors = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["RuntimeError"]
    assert "connected to the internet, then run this cell again" in errors[0].evalue


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_runs_top_to_bottom_in_a_fresh_colab_runtime(colab, page):
    folder = colab.fresh_folder(page.stem)
    shutil.copy2(page, folder / page.name)  # the notebook alone
    nb = nbformat.read(folder / page.name, as_version=4)
    colab.execute(nb, folder)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].outputs == [], "the set-up cell is quiet"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    if any("load_mnist" in c.source for c in code):
        assert (folder / "cache" / "mnist.npz").exists(), "MNIST fetched into the page's own cache"
