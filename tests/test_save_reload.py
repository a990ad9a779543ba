"""Saving the trained network in today's formats, and reading it back: the same logits.

The low-level network goes to a ``tf.train.Checkpoint`` and comes back into a *new* network
with other initial weights; its Keras twin goes to a ``.keras`` file and comes back with
``keras.saving.load_model``, in this process and in a fresh Python that never saw the model.
The oracle is the course model's own logits on real test digits, computed before saving.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mnist_lessons.evaluate import predict_logits


@pytest.fixture(scope="module")
def course(mnist):
    from mnist_lessons.checkpoints import load_course_model

    return load_course_model(mnist).model


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_test[:500].astype(np.float32) / 255.0


def test_checkpoint_round_trip_gives_the_same_logits(course, digits, tmp_path):
    import tensorflow as tf

    from mnist_lessons.model import ArticleCNN

    before = predict_logits(course, digits)
    path = tf.train.Checkpoint(weights=course.weights, biases=course.biases).write(
        str(tmp_path / "course"))
    fresh = ArticleCNN(course.hp.replace(seed=course.hp.seed + 1))  # other random weights
    assert not np.allclose(predict_logits(fresh, digits), before)
    status = tf.train.Checkpoint(weights=fresh.weights, biases=fresh.biases).read(path)
    status.assert_consumed()  # every saved variable found its place, and every variable was set
    np.testing.assert_array_equal(predict_logits(fresh, digits), before)


def test_checkpoint_into_a_network_of_another_shape_fails_loudly(course, tmp_path):
    import tensorflow as tf

    path = tf.train.Checkpoint(weights=course.weights, biases=course.biases).write(
        str(tmp_path / "course"))
    wrong = {"W_conv1": tf.Variable(tf.zeros((3, 3, 1, 32)))}
    with pytest.raises(ValueError, match="shape"):
        tf.train.Checkpoint(weights=wrong).read(path)


def test_keras_file_round_trip_gives_the_same_logits(course, digits, tmp_path):
    import keras

    from mnist_lessons.model import build_keras_model, copy_weights_to_keras

    twin = build_keras_model(course.hp)
    copy_weights_to_keras(course.weights, course.biases, twin)
    low_level = predict_logits(course, digits)
    before = twin.predict(digits[..., None], verbose=0)
    np.testing.assert_allclose(before, low_level, rtol=1e-4, atol=1e-3)  # the same network
    file = tmp_path / "course.keras"
    twin.save(file)
    again = keras.saving.load_model(file)
    np.testing.assert_array_equal(again.predict(digits[..., None], verbose=0), before)

    # a fresh Python with Keras alone (no mnist_lessons import) reads the file and agrees
    np.save(tmp_path / "digits.npy", digits[:50])
    code = ("import numpy as np, keras; m = keras.saving.load_model(r'%s'); "
            "np.save(r'%s', m.predict(np.load(r'%s')[..., None], verbose=0))"
            % (file, tmp_path / "out.npy", tmp_path / "digits.npy"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), before[:50], rtol=1e-5, atol=1e-5)
