"""The environment installs anywhere: one lock file, hash-checked, for every platform and for
every supported Python, and a Makefile that finds a supported Python or says what to do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.txt"
INPUTS = ROOT / "requirements.in"
SUPPORTED = ("3.11", "3.12", "3.13")
REFUSED = ("3.9", "3.10")
MESSAGE = "MNIST Lessons needs Python 3.11 to 3.13; found "
# (sys_platform, platform_machine, platform_system, os_name) of the machines the lock serves.
PLATFORMS = {
    "linux/x86_64": ("linux", "x86_64", "Linux", "posix"),
    "linux/aarch64": ("linux", "aarch64", "Linux", "posix"),
    "darwin/arm64": ("darwin", "arm64", "Darwin", "posix"),
    "win32/AMD64": ("win32", "AMD64", "Windows", "nt"),
}


def _entries(path: Path) -> list[tuple[Requirement, list[str]]]:
    """Each requirement of a requirements file with its hashes (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    entries = []
    for line in text.splitlines():
        line = line.split(" #")[0].split("\t#")[0] if not line.lstrip().startswith("#") else ""
        if not line.strip() or line.lstrip().startswith("-"):
            continue
        requirement, *options = re.split(r"\s+(?=--)", line.strip())
        entries.append((Requirement(requirement),
                        [o.split("=", 1)[1] for o in options if o.startswith("--hash=")]))
    return entries


def _environment(platform: str, python: str) -> dict[str, str]:
    sys_platform, machine, system, os_name = PLATFORMS[platform]
    return {**default_environment(), "sys_platform": sys_platform, "platform_machine": machine,
            "platform_system": system, "os_name": os_name, "python_version": python,
            "python_full_version": f"{python}.0", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"}


def _applies(req: Requirement, env: dict[str, str]) -> bool:
    return req.marker is None or req.marker.evaluate(env)


def _version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", req
    return spec.version


# --- the lock file -----------------------------------------------------------------------------

def test_the_lock_pins_every_requirement_with_hashes():
    entries = _entries(LOCK)
    assert len(entries) > 100, "the lock holds the whole environment, not only the top level"
    for req, hashes in entries:
        _version(req)
        assert hashes, f"{req.name} has no hash in {LOCK.name}"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), req.name


def test_the_lock_is_written_by_make_lock_with_uv():
    assert re.search(r"^#\s+make lock$", LOCK.read_text(), re.M), "the lock says how to rewrite it"
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^lock:.*\n((?:\t.*\n)+)", makefile, re.M).group(1).replace("\\\n", " ")
    for option in ("pip compile requirements.in", "--universal", "--generate-hashes",
                   "--output-file requirements.txt"):
        assert option in recipe


def test_the_lock_keeps_every_pin_of_requirements_in():
    locked = {}
    for req, _ in _entries(LOCK):
        locked.setdefault(canonicalize_name(req.name), []).append(req)
    for wanted, _ in _entries(INPUTS):
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{wanted.name} of {INPUTS.name} is not in the lock"
        for platform in PLATFORMS:
            for python in SUPPORTED:
                env = _environment(platform, python)
                here = [req for req in locked[name] if _applies(req, env)]
                assert len(here) == int(_applies(wanted, env)), (wanted, platform, python)
                if here and wanted.specifier:
                    assert wanted.specifier.contains(_version(here[0])), (wanted, here[0])


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("python", SUPPORTED)
def test_the_lock_installs_exactly_one_tensorflow_on_each_platform(platform, python):
    env = _environment(platform, python)
    tensorflows = {canonicalize_name(req.name): req for req, _ in _entries(LOCK)
                   if canonicalize_name(req.name) in ("tensorflow", "tensorflow-cpu")}
    assert set(tensorflows) == {"tensorflow", "tensorflow-cpu"}, "both, each under its marker"
    assert _version(tensorflows["tensorflow"]) == _version(tensorflows["tensorflow-cpu"])
    assert all(req.marker is not None for req in tensorflows.values())
    applying = [name for name, req in tensorflows.items() if _applies(req, env)]
    cpu_only_build = platform in ("linux/x86_64", "win32/AMD64")  # where tensorflow-cpu has wheels
    assert applying == ["tensorflow-cpu" if cpu_only_build else "tensorflow"]


def test_every_package_of_the_lock_installs_with_one_version_on_each_platform():
    for platform in PLATFORMS:
        for python in SUPPORTED:
            env = _environment(platform, python)
            names = [canonicalize_name(req.name) for req, _ in _entries(LOCK) if _applies(req, env)]
            assert len(names) == len(set(names)), (platform, python)


def test_the_colab_test_reads_its_pins_from_the_lock():
    from test_colab import COLAB_PREINSTALLED, _pins

    locked = {canonicalize_name(req.name): _version(req) for req, _ in _entries(LOCK)}
    pins = _pins(COLAB_PREINSTALLED)
    assert pins == [f"{canonicalize_name(n)}=={locked[canonicalize_name(n)]}"
                    for n in COLAB_PREINSTALLED]
    assert "tensorflow==" + locked["tensorflow"] in pins, "Colab has tensorflow, not tensorflow-cpu"


def test_the_lock_is_up_to_date_with_requirements_in(tmp_path):
    """Resolving requirements.in again (keeping the lock's versions, as `make lock` does) gives
    the same pins, markers and all: nobody edited one file without the other. Needs PyPI."""
    pytest.importorskip("uv")
    out = tmp_path / "requirements.txt"
    shutil.copy2(LOCK, out)
    done = subprocess.run([sys.executable, "-m", "uv", "pip", "compile", str(INPUTS), "--universal",
                           "--python-version", SUPPORTED[0], "--quiet", "--no-header",
                           "--no-annotate", "--output-file", str(out)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and re.search(r"(?i)network|dns|connect|timed out|failed to fetch|sending request", done.stderr):
        pytest.skip(f"PyPI out of reach: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr

    def pins(path):
        return sorted(str(req) for req, _ in _entries(path))

    assert pins(out) == pins(LOCK), "run `make lock` and commit requirements.txt"


# --- the Makefile's Python ---------------------------------------------------------------------

def _interpreter(version: str) -> str | None:
    """A Python of this version on this machine: pythonX.Y on PATH if it runs, else pyenv's."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [shutil.which(f"python{version}"),
             *map(str, sorted(pyenv.glob(f"versions/{version}.*/bin/python{version}")))]
    for python in filter(None, found):
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == version:
            return python
    return None


def _make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MAKELEVEL")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([make, "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("version", SUPPORTED)
def test_the_makefile_accepts_a_supported_python(version, tmp_path):
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    done = _make(f"PYTHON={python}", f"VENV={tmp_path / 'venv'}", "check-python")
    assert done.returncode == 0, done.stderr
    dry = _make(f"PYTHON={python}", f"VENV={tmp_path / 'venv'}", "-n", "env")
    assert f"{python} -m venv {tmp_path / 'venv'}" in dry.stdout


@pytest.mark.parametrize("version", REFUSED)
def test_the_makefile_refuses_an_older_python_in_one_line(version, tmp_path):
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    full = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True).stdout.strip()
    done = _make(f"PYTHON={python}", f"VENV={tmp_path / 'venv'}", "test")
    assert done.returncode != 0
    assert [line for line in done.stderr.splitlines() if line.startswith(MESSAGE)] == [
        f"{MESSAGE}Python {full} ({python}): install one or run make PYTHON=/path/to/python3.12 test"]
    assert not (tmp_path / "venv").exists(), "nothing was installed"


def _fake_path(tmp_path: Path, **links: str) -> str:
    """A PATH holding only these interpreters, under these names (python3=..., python3.12=...)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, target in links.items():
        (folder / name.replace("_", ".")).symlink_to(target)
    return str(folder)


def test_the_makefile_finds_a_supported_python_on_path(tmp_path):
    old, new = _interpreter("3.9") or _interpreter("3.10"), _interpreter("3.12")
    if old is None or new is None:
        pytest.skip("needs Python 3.12 and an older one (3.9 or 3.10) on this machine")
    path = _fake_path(tmp_path, python3=old, python3_12=new)
    dry = _make(f"VENV={tmp_path / 'venv'}", "-n", "env", path=path)
    assert f"python3.12 -m venv {tmp_path / 'venv'}" in dry.stdout, dry.stdout + dry.stderr


def test_the_makefile_says_what_to_do_when_no_supported_python_is_found(tmp_path):
    old = _interpreter("3.9") or _interpreter("3.10")
    if old is None:
        pytest.skip("needs Python 3.9 or 3.10 on this machine")
    path = _fake_path(tmp_path, python3=old)
    done = _make(f"VENV={tmp_path / 'venv'}", "book", path=path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith(MESSAGE)]
    assert len(lines) == 1 and lines[0].endswith(
        "(python3): install one or run make PYTHON=/path/to/python3.12 book"), done.stderr


def test_the_makefile_installs_the_lock_hash_checked_and_the_package_alone(tmp_path):
    python = next(filter(None, map(_interpreter, SUPPORTED)), None)
    if python is None:
        pytest.skip("no supported Python on this machine")
    dry = _make(f"PYTHON={python}", f"VENV={tmp_path / 'venv'}", "-n", "env").stdout
    assert re.search(r"uv pip sync .*--compile-bytecode --require-hashes requirements\.txt", dry)
    assert re.search(r"uv pip install .*--no-deps .*-e \.", dry)
    assert re.search(r"pip install .*--require-hashes --no-deps", dry), "uv itself, hash-checked"
    assert "pip check" in dry


def test_the_makefile_says_what_to_do_when_the_venv_has_an_older_python(tmp_path):
    old = _interpreter("3.9") or _interpreter("3.10")
    if old is None:
        pytest.skip("needs Python 3.9 or 3.10 on this machine")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(old)
    done = _make(f"VENV={venv}", "test")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith(MESSAGE)]
    assert len(lines) == 1 and lines[0].endswith(f"({venv}/bin/python): remove {venv} and run make again")


def test_the_installed_packages_are_compiled_to_bytecode():
    """uv installs without bytecode unless asked; then, where PYTHONDONTWRITEBYTECODE is set (this
    project's machines set it), every kernel compiles TensorFlow's Python again on import: twice
    the CPU of a kernel's start (measured 20 s against 9 s for tensorflow and matplotlib)."""
    import importlib.util

    import keras
    import matplotlib
    import tensorflow

    for module in (tensorflow, keras, matplotlib):
        compiled = Path(importlib.util.cache_from_source(module.__file__))
        assert compiled.exists(), f"{module.__name__} has no bytecode: run make again ({compiled})"


def test_make_readme_picture_copies_the_live_panel_shot_or_says_to_run_the_tests(tmp_path):
    # In a copy of the Makefile, so the repository's own picture is left alone.
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "docs").mkdir()
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    run = lambda: subprocess.run([make, "--no-print-directory", "-C", str(tmp_path), "readme-picture"],  # noqa: E731
                                 capture_output=True, text=True, timeout=60)
    missing = run()
    assert missing.returncode != 0 and "run make test first" in missing.stderr
    assert not (tmp_path / "docs" / "live-panel.png").exists()
    shots = tmp_path / "artifacts" / "screenshots"
    shots.mkdir(parents=True)
    (shots / "live-panel-drawing.png").write_bytes(b"\x89PNG\r\n\x1a\n the shot")
    assert run().returncode == 0
    assert (tmp_path / "docs" / "live-panel.png").read_bytes() == b"\x89PNG\r\n\x1a\n the shot"
