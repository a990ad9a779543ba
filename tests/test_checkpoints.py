"""mnist_lessons.checkpoints: the trained-model cache round trip and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_lessons import config, model
from mnist_lessons.checkpoints import (
    ModelCacheError,
    cache_path,
    load_trained,
    run_settings,
    trained_model,
)
from mnist_lessons.model import Hyperparameters

TINY = Hyperparameters(epochs=1, seed=5)


@pytest.fixture()
def model_cache(tmp_path, monkeypatch):
    """An empty cache folder and the CI profile, capped at 30 steps for speed."""
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path))
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "ci")
    monkeypatch.setattr(config, "CI_TRAIN_STEPS", 30)
    return tmp_path


@pytest.fixture()
def cached(model_cache, mnist):
    return trained_model(TINY, data=mnist, verbose=False)


@pytest.mark.slow
def test_first_call_trains_and_later_calls_load_the_same_model(cached, mnist, capsys):
    assert not cached.from_cache and cached.path.exists()
    assert len(cached.history.step_losses) == 30  # the CI cap, read from the settings
    again = trained_model(TINY, data=mnist)
    assert again.from_cache and again.path == cached.path
    assert "loaded the trained model from the cache" in capsys.readouterr().out
    x = mnist.x_test[:64].astype(np.float32) / 255
    np.testing.assert_array_equal(cached.model(x).numpy(), again.model(x).numpy())
    assert again.history.epochs == cached.history.epochs
    assert again.settings == cached.settings == run_settings(TINY, max_steps=30)
    assert not list(cached.path.parent.glob("*.part"))


@pytest.mark.slow
def test_other_settings_get_another_file(cached):
    other = run_settings(TINY.replace(seed=6), max_steps=30)
    assert cache_path(other) != cached.path
    assert cache_path(run_settings(TINY, optimizer="sgd", max_steps=30)) != cached.path
    assert cache_path(run_settings(TINY, max_steps=None)) != cached.path  # CI vs full


@pytest.mark.slow
def test_retrain_overwrites(cached, mnist):
    again = trained_model(TINY, data=mnist, retrain=True, verbose=False)
    assert not again.from_cache and again.path == cached.path


@pytest.mark.slow
def test_corrupted_cache_file_is_a_clear_error(cached, mnist):
    cached.path.write_bytes(cached.path.read_bytes()[:5000])
    with pytest.raises(ModelCacheError, match="damaged. Delete it"):
        trained_model(TINY, data=mnist)


@pytest.mark.slow
def test_cache_file_from_other_settings_is_refused(cached):
    with pytest.raises(ModelCacheError, match="trained with other settings"):
        load_trained(cached.path, run_settings(TINY.replace(seed=99), max_steps=30))


@pytest.mark.slow
def test_cache_file_from_another_version_is_refused(cached):
    with np.load(cached.path) as npz:
        arrays = dict(npz)
    run = json.loads(str(arrays["settings"]))
    arrays["settings"] = np.array(json.dumps({**run, "format": 0}))
    np.savez(cached.path, **arrays)
    with pytest.raises(ModelCacheError, match="another version of mnist_lessons"):
        load_trained(cached.path)


@pytest.mark.slow
def test_cache_file_with_wrong_weights_is_refused(cached):
    with np.load(cached.path) as npz:
        arrays = dict(npz)
    arrays["weights/W_fc"] = arrays["weights/W_fc"][:, :10]
    np.savez(cached.path, **arrays)
    with pytest.raises(ModelCacheError, match="does not hold the article's network"):
        load_trained(cached.path)


def test_missing_file_and_wrong_argument(tmp_path):
    with pytest.raises(ModelCacheError, match="No cached model"):
        load_trained(tmp_path / "absent.npz")
    with pytest.raises(TypeError, match="hp must be a Hyperparameters"):
        trained_model({"epochs": 1})


def test_course_defaults_are_the_articles_network_and_batch():
    hp = model.COURSE_DEFAULTS
    assert hp.batch_size == 128 and hp.keep_rate == 0.8 and hp.init == "glorot"
