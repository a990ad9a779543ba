"""The course model shipped with the package: checked, current, and what it claims to be."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from mnist_lessons import checkpoints, config
from mnist_lessons.checkpoints import (
    COURSE_MODEL_FILE,
    COURSE_MODEL_RECORD,
    ModelCacheError,
    load_course_model,
    trained_model,
)
from mnist_lessons.evaluate import accuracy_on_test_set
from mnist_lessons.model import COURSE_DEFAULTS

RECORD = json.loads(COURSE_MODEL_RECORD.read_text())


def test_shipped_file_has_the_recorded_sha256_and_size():
    blob = COURSE_MODEL_FILE.read_bytes()
    assert len(blob) == RECORD["bytes"]
    assert hashlib.sha256(blob).hexdigest() == RECORD["sha256"]
    # 3,274,634 float32 parameters are 13.1 MB; compression is lossless, so little is saved.
    assert 11e6 < len(blob) < 14e6


def test_shipped_model_was_trained_by_the_current_training_code_on_mnist(mnist):
    settings = RECORD["settings"]
    assert settings["code"] == checkpoints.training_code_hash(), (
        "the training code changed since the course model was built: run "
        "python -m mnist_lessons.tools.course_model")
    assert settings["data"] == checkpoints.data_fingerprint(mnist)
    hp = dict(settings["hyperparameters"])
    assert hp.pop("precision") in ("float32", "bfloat16")
    expected = COURSE_DEFAULTS.to_dict()
    expected.pop("precision")
    assert hp == expected and settings["max_steps"] is None


def test_course_settings_load_the_shipped_model_in_any_profile(mnist, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path))
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "ci")
    course = trained_model(data=mnist)
    assert course.from_cache and course.path == COURSE_MODEL_FILE
    assert "loaded the course model shipped with mnist_lessons" in capsys.readouterr().out
    assert not (tmp_path / "models").exists()  # nothing trained, nothing cached


def test_recorded_accuracy_is_the_accuracy_of_the_shipped_file(mnist):
    measured = accuracy_on_test_set(load_course_model(mnist).model, mnist)
    # Exact on the machine that built it; another CPU may round a near-tie differently.
    assert abs(measured - RECORD["test_accuracy"]) <= 2 / len(mnist.y_test)
    assert measured > 0.99


def test_a_damaged_shipped_file_is_refused_and_the_course_model_trained(mnist, monkeypatch,
                                                                         tmp_path, capsys):
    damaged = tmp_path / "course_model.npz"
    shutil.copy(COURSE_MODEL_FILE, damaged)
    with open(damaged, "r+b") as f:
        f.seek(len(damaged.read_bytes()) // 2)
        f.write(b"\0\0\0\0")
    monkeypatch.setattr(checkpoints, "COURSE_MODEL_FILE", damaged)
    with pytest.raises(ModelCacheError, match="it is damaged; reinstall"):
        load_course_model(mnist)
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path))
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "ci")
    monkeypatch.setattr(config, "CI_TRAIN_STEPS", 5)
    result = trained_model(data=mnist, verbose=False)
    assert "the shipped course model could not be used (shipped file damaged): training it" \
        in capsys.readouterr().out
    assert not result.from_cache and len(result.history.step_losses) == 5


def test_a_shipped_model_from_other_training_code_is_stale(mnist, monkeypatch):
    monkeypatch.setattr(checkpoints, "training_code_hash", lambda: "0123456789abcdef")
    with pytest.raises(ModelCacheError, match="trained by other training code"):
        load_course_model(mnist)


@pytest.mark.slow
@pytest.mark.skipif(config.settings().is_ci, reason="trains 10 full epochs (about 3 minutes "
                    "here): run with the full profile, e.g. `make test` outside CI")
def test_retraining_with_the_course_settings_reaches_the_shipped_accuracy(mnist, monkeypatch,
                                                                          tmp_path):
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path))
    fresh = trained_model(data=mnist, retrain=True, verbose=False)
    assert not fresh.from_cache
    accuracy = accuracy_on_test_set(fresh.model, mnist)
    assert abs(accuracy - RECORD["test_accuracy"]) <= 0.0015, (accuracy, RECORD["test_accuracy"])
    np.testing.assert_equal(fresh.settings["code"], RECORD["settings"]["code"])
