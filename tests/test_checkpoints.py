"""mnist_lessons.checkpoints: the trained-model cache round trip and its errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from mnist_lessons import config, model
from mnist_lessons import checkpoints, runtime
from mnist_lessons.checkpoints import (
    ModelCacheError,
    cache_path,
    code_fingerprint,
    data_fingerprint,
    load_trained,
    run_settings,
    trained_model,
)
from mnist_lessons.data import MNIST
from mnist_lessons.model import Hyperparameters

TINY = Hyperparameters(epochs=1, seed=5)
#: The CI cap on steps in this module: what the cache does does not depend on how long a run
#: trained, and each retraining's steps are then a small part of its time.
CAP = 8


@pytest.fixture(scope="module")
def mnist(mnist):
    """Real MNIST, cut to its first 15,000 training and 1,000 test images. What the cache does
    does not depend on how many images there are, and each of this module's trainings then
    measures 5,000 validation and 1,000 test images instead of 5,000 and 10,000, which took
    most of each retraining's time."""
    return MNIST(mnist.x_train[:15_000], mnist.y_train[:15_000], mnist.x_test[:1000],
                 mnist.y_test[:1000], f"the first 15,000 and 1,000 images of {mnist.source}")


@pytest.fixture()
def model_cache(tmp_path, monkeypatch):
    """An empty cache folder and the CI profile, capped at CAP steps for speed."""
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path))
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "ci")
    monkeypatch.setattr(config, "CI_TRAIN_STEPS", CAP)
    return tmp_path


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory, mnist):
    """TINY trained once (CAP steps, CI profile) in a cache folder of its own."""
    folder = tmp_path_factory.mktemp("trained_once")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNIST_LESSONS_CACHE", str(folder))
        mp.setenv("MNIST_LESSONS_PROFILE", "ci")
        mp.setattr(config, "CI_TRAIN_STEPS", CAP)
        return trained_model(TINY, data=mnist, verbose=False)


@pytest.fixture()
def cached(model_cache, trained_once):
    """The first call's result, its file copied into this test's empty cache (each test may
    damage or replace its copy; training once serves them all)."""
    path = cache_path(trained_once.settings)
    assert path != trained_once.path and path.is_relative_to(model_cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(trained_once.path, path)
    return dataclasses.replace(trained_once, path=path)


@pytest.mark.slow
def test_first_call_trains_and_later_calls_load_the_same_model(cached, trained_once, mnist, capsys):
    assert not cached.from_cache and cached.path.exists()
    assert len(cached.history.step_losses) == CAP  # the CI cap, read from the settings
    again = trained_model(TINY, data=mnist)
    assert again.from_cache and again.path == cached.path
    assert "loaded the trained model from the cache" in capsys.readouterr().out
    x = mnist.x_test[:64].astype(np.float32) / 255
    np.testing.assert_array_equal(cached.model(x).numpy(), again.model(x).numpy())
    assert again.history.epochs == cached.history.epochs
    assert again.settings == cached.settings == run_settings(TINY, max_steps=CAP, data=mnist)
    assert not list(trained_once.path.parent.glob("*.part"))


@pytest.mark.slow
def test_other_settings_get_another_file(cached, mnist):
    other = run_settings(TINY.replace(seed=6), max_steps=CAP, data=mnist)
    assert cache_path(other) != cached.path
    assert cache_path(run_settings(TINY, optimizer="sgd", max_steps=CAP, data=mnist)) != cached.path
    assert cache_path(run_settings(TINY, max_steps=None, data=mnist)) != cached.path  # CI vs full


@pytest.mark.slow
def test_retrain_overwrites(cached, mnist):
    again = trained_model(TINY, data=mnist, retrain=True, verbose=False)
    assert not again.from_cache and again.path == cached.path


@pytest.mark.slow
def test_damaged_cache_file_is_a_miss_that_retrains_with_one_line(cached, mnist, capsys):
    cached.path.write_bytes(cached.path.read_bytes()[:5000])
    with pytest.raises(ModelCacheError, match="it is damaged"):
        load_trained(cached.path)
    capsys.readouterr()
    again = trained_model(TINY, data=mnist, verbose=False)
    out = capsys.readouterr().out
    assert out == "the cached model could not be used (damaged file): training it again\n"
    assert not again.from_cache
    assert load_trained(cached.path).settings == again.settings  # the file was replaced


def _rewrite_settings(path, **changes):
    with np.load(path) as npz:
        arrays = dict(npz)
    run = json.loads(str(arrays["settings"]))
    arrays["settings"] = np.array(json.dumps({**run, **changes}))
    np.savez(path, **arrays)


@pytest.mark.slow
def test_cache_file_of_an_older_format_is_a_miss_that_retrains(cached, mnist, capsys):
    _rewrite_settings(cached.path, format=1)
    with pytest.raises(ModelCacheError, match="file format 1 of another version"):
        load_trained(cached.path)
    capsys.readouterr()
    again = trained_model(TINY, data=mnist, verbose=False)
    assert "(file format 1, not 3): training it again" in capsys.readouterr().out
    assert not again.from_cache and load_trained(cached.path).settings["format"] == 3


@pytest.mark.slow
def test_cache_file_holding_other_settings_is_a_miss_naming_what_differs(cached, mnist, capsys):
    _rewrite_settings(cached.path, code="0" * 16)  # as if trained by other code
    with pytest.raises(ModelCacheError, match="different: code"):
        load_trained(cached.path, cached.settings)
    capsys.readouterr()
    assert not trained_model(TINY, data=mnist, verbose=False).from_cache
    assert "(trained with another code): training it again" in capsys.readouterr().out


@pytest.mark.slow
def test_a_model_trained_on_a_subset_is_never_served_for_the_full_set(model_cache, mnist):
    # The 5,000 validation images and 512 to train on.
    subset = MNIST(mnist.x_train[:5512], mnist.y_train[:5512], mnist.x_test[:256],
                   mnist.y_test[:256], "first 5,512 training images")
    small = trained_model(TINY, data=subset, verbose=False)
    full = trained_model(TINY, data=mnist, verbose=False)
    assert not full.from_cache and full.path != small.path
    assert full.settings["data"] != small.settings["data"]


@pytest.mark.slow
def test_cache_file_with_wrong_weights_is_refused(cached):
    with np.load(cached.path) as npz:
        arrays = dict(npz)
    arrays["weights/W_fc"] = arrays["weights/W_fc"][:, :10]
    np.savez(cached.path, **arrays)
    with pytest.raises(ModelCacheError, match="does not hold the article's network"):
        load_trained(cached.path)


def test_data_fingerprint_changes_with_any_image_and_not_with_the_source_name(mnist):
    same = MNIST(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test, "another path")
    assert data_fingerprint(same) == data_fingerprint(mnist)
    x_test = mnist.x_test.copy()
    x_test[-1, 27, 27] ^= 1  # one bit of one pixel of the last test image
    changed = MNIST(mnist.x_train, mnist.y_train, x_test, mnist.y_test, mnist.source)
    assert data_fingerprint(changed) != data_fingerprint(mnist)
    with pytest.raises(TypeError, match="MNIST from load_mnist"):
        data_fingerprint((mnist.x_train, mnist.y_train))


def test_code_fingerprint_ignores_comments_and_docstrings_but_not_code():
    plain = "def step(x):\n    return x * 0.5 + 1\n"
    documented = ('def step(x):\n    """Halve, then add one."""\n'
                  "    # a comment\n    return x * 0.5 + 1  # another\n")
    assert code_fingerprint(plain) == code_fingerprint(documented)
    for changed in ("def step(x):\n    return x * 0.25 + 1\n",
                    "def step(x):\n    return x * 0.5 - 1\n",
                    "def step(y):\n    return y * 0.5 + 1\n"):
        assert code_fingerprint(changed) != code_fingerprint(plain)


def test_cache_key_holds_the_code_the_data_and_the_library_versions(mnist, monkeypatch):
    run = run_settings(TINY, data=mnist)
    assert {"code", "data", "versions"} <= set(run)
    import keras
    import tensorflow as tf

    assert run["versions"] == {"tensorflow": tf.__version__, "keras": keras.__version__,
                               "numpy": np.__version__}
    monkeypatch.setattr(checkpoints, "training_code_hash", lambda: "changed")
    assert cache_path(run_settings(TINY, data=mnist)) != cache_path(run)
    monkeypatch.undo()
    monkeypatch.setattr(checkpoints, "library_versions", lambda: {**run["versions"], "keras": "9"})
    assert cache_path(run_settings(TINY, data=mnist)) != cache_path(run)


def test_cache_key_stores_the_precision_auto_resolved_to(mnist, monkeypatch):
    for fast, resolved in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(runtime, "has_fast_bfloat16", lambda *args, **kw: fast)
        auto = run_settings(TINY.replace(precision="auto"), data=mnist)
        assert auto["hyperparameters"]["precision"] == resolved
        assert auto == run_settings(TINY.replace(precision=resolved), data=mnist)
    other = run_settings(TINY.replace(precision="bfloat16"), data=mnist)
    assert cache_path(other) != cache_path(run_settings(TINY.replace(precision="float32"), data=mnist))


def test_equal_settings_written_differently_share_one_key(mnist):
    base = run_settings(Hyperparameters(epochs=1, batch_size=64, learning_rate=1.0), data=mnist)
    for hp in (Hyperparameters(epochs=1, batch_size=64, learning_rate=1),
               Hyperparameters(epochs=np.int32(1), batch_size=np.int64(64),
                               learning_rate=np.float32(1.0))):
        assert cache_path(run_settings(hp, data=mnist)) == cache_path(base)
    json.dumps(base)  # the key is plain JSON


def test_missing_file_and_wrong_argument(tmp_path):
    with pytest.raises(ModelCacheError, match="No cached model"):
        load_trained(tmp_path / "absent.npz")
    with pytest.raises(TypeError, match="hp must be a Hyperparameters"):
        trained_model({"epochs": 1})


def test_course_defaults_are_the_articles_network_and_batch():
    hp = model.COURSE_DEFAULTS
    assert hp.batch_size == 128 and hp.keep_rate == 0.8 and hp.init == "glorot"


@pytest.mark.slow
def test_a_cached_run_keeps_its_validation_curve_and_its_one_test_accuracy(cached, mnist):
    h = cached.history
    assert [s for s, _, _ in h.evaluations] == [CAP]  # one evaluation, at the end of the cap
    again = load_trained(cached.path)
    assert again.history.test_accuracy == h.test_accuracy is not None
    assert again.history.evaluations == h.evaluations
    assert cached.settings["track_training"] is False


@pytest.mark.slow
def test_a_smaller_step_budget_and_training_accuracy_get_their_own_file(model_cache, mnist):
    small = trained_model(TINY, data=mnist, max_steps=3, track_training=True, verbose=False)
    assert len(small.history.step_losses) == 3  # below the CI cap, so it applies
    assert small.settings["max_steps"] == 3 and small.settings["track_training"] is True
    assert [s for s, _ in small.history.training_evaluations] == [3]
    capped = run_settings(TINY, max_steps=CAP, data=mnist)
    assert cache_path(capped) != small.path
    again = trained_model(TINY, data=mnist, max_steps=3, track_training=True, verbose=False)
    assert again.from_cache and again.history.training_evaluations == small.history.training_evaluations
    with pytest.raises(ValueError, match="max_steps must be a positive integer or None"):
        trained_model(TINY, data=mnist, max_steps=0)


@pytest.mark.slow
def test_a_training_curve_is_cached_with_its_evaluations(model_cache, mnist, capsys):
    # Chapter 4 plots two short runs measured every 25 steps: cached, a second run loads them.
    curve = trained_model(TINY, data=mnist, max_steps=4, eval_every=2, verbose=False)
    assert [s for s, _, _ in curve.history.evaluations] == [2, 4]
    assert curve.settings["eval_every"] == 2
    assert cache_path(run_settings(TINY, max_steps=4, data=mnist)) != curve.path
    again = trained_model(TINY, data=mnist, max_steps=4, eval_every=2)
    assert again.from_cache and again.history.evaluations == curve.history.evaluations
    assert "loaded the trained model from the cache" in capsys.readouterr().out
    # Runs without it keep the key they had before eval_every existed (no "eval_every" entry).
    assert "eval_every" not in run_settings(TINY, max_steps=4, data=mnist)
    for bad in (0, -25, 2.5, True):
        with pytest.raises(ValueError, match="eval_every must be a positive integer or None"):
            trained_model(TINY, data=mnist, eval_every=bad)


SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")  # the Makefile's range; Colab runs 3.12


def _pythons() -> dict[str, str]:
    """Each supported Python found on this machine (on PATH or under pyenv), by version."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = {}
    for version in SUPPORTED_PYTHONS:
        for python in filter(None, [shutil.which(f"python{version}"),
                                    *map(str, sorted(pyenv.glob(f"versions/{version}.*/bin/python{version}")))]):
            done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip() == version:
                found[version] = python
                break
    return found


def test_the_training_code_has_the_shipped_models_fingerprint_under_every_supported_python():
    """The oracle: the code fingerprint recorded when the course model was trained (Python
    3.11). Each supported Python found here computes it from the training modules' source with
    the package's own functions, run alone (standard library only): a Python whose syntax trees
    print differently (3.12's type parameters) must still find the shipped model, or Colab
    would train it again in every chapter."""
    import ast
    import inspect
    import subprocess

    recorded = checkpoints.course_model_record()["settings"]["code"]
    tree = ast.parse(inspect.getsource(checkpoints))
    wanted = {"NEWER_AST_FIELDS", "ast_text", "code_fingerprint"}
    parts = [ast.get_source_segment(inspect.getsource(checkpoints), node) for node in tree.body
             if getattr(node, "name", None) in wanted
             or (isinstance(node, ast.Assign) and {getattr(t, "id", None) for t in node.targets} & wanted)]
    assert len(parts) == 3
    modules = [(m.__name__, inspect.getsourcefile(m)) for m in checkpoints.TRAINING_CODE]
    script = "\n".join(["import ast, hashlib, json, sys", "from typing import Any", *parts,
                        "digest = hashlib.sha256()",
                        "for name, path in json.loads(sys.argv[1]):",
                        "    digest.update(name.encode() + b'\\0')",
                        "    digest.update(code_fingerprint(open(path).read()).encode() + b'\\0')",
                        "print(digest.hexdigest()[:16])"])
    pythons = _pythons()
    if len(pythons) < 2:
        pytest.skip(f"only {sorted(pythons)} of the supported Pythons {SUPPORTED_PYTHONS} found here")
    for version, python in pythons.items():
        done = subprocess.run([python, "-I", "-c", script, json.dumps(modules)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == recorded, f"Python {version}"
    assert checkpoints.training_code_hash() == recorded


@pytest.mark.slow
def test_a_run_being_trained_elsewhere_is_waited_for_and_then_loaded(model_cache, trained_once, mnist, capsys):
    """Two pages executed side by side asking for the same run: the second waits for the first
    one's file instead of training the same run again. Here the test holds the entry, as a
    process training it would, and saves the file while the other caller waits."""
    import threading
    import time

    path = cache_path(trained_once.settings)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(got=trained_model(TINY, data=mnist)))
    seen = ""
    with checkpoints.only_one_trains(path, verbose=False):
        worker.start()
        deadline = time.monotonic() + 60
        while "waiting for it" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
            seen += capsys.readouterr().out
        assert "another process is training this model: waiting for it" in seen
        assert worker.is_alive() and not path.exists()
        shutil.copyfile(trained_once.path, path)  # what the other process saves when done
    worker.join(60)
    assert not worker.is_alive()
    assert result["got"].from_cache, "loaded the other process's file, not trained again"
    assert "loaded the trained model from the cache" in seen + capsys.readouterr().out
    # The lock is a hidden file beside the entry, not one the book copies as a model.
    assert (path.parent / f".{path.stem}.lock").exists()
    assert not list(path.parent.glob("article_cnn-*.lock"))
