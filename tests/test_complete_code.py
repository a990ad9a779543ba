"""mnist_lessons.complete_code: the one-page versions train, and agree with each other."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mnist_lessons import complete_code as cc
from mnist_lessons.model import build_keras_model, copy_weights_to_keras, init_params


def test_low_level_and_keras_versions_give_the_same_logits(mnist):
    weights, biases = init_params("glorot", seed=3)
    model = build_keras_model()
    copy_weights_to_keras(weights, biases, model)
    x = mnist.x_test[:200].astype(np.float32) / 255.0
    low = cc.convolutional_neural_network(x.reshape(-1, 784), weights, biases).numpy()
    high = model(x[..., None], training=False).numpy()
    assert np.abs(low).max() > 0.1
    np.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-5)
    assert model.count_params() == sum(int(np.prod(v.shape)) for v in [*weights.values(), *biases.values()])


def test_new_weights_have_the_articles_shapes_glorot_scale_and_zero_biases():
    weights, biases = cc.new_weights_and_biases(seed=1)
    shapes = {k: tuple(v.shape) for k, v in {**weights, **{"b/" + k: v for k, v in biases.items()}}.items()}
    assert shapes == {"W_conv1": (5, 5, 1, 32), "W_conv2": (5, 5, 32, 64), "W_fc": (3136, 1024),
                      "out": (1024, 10), "b/b_conv1": (32,), "b/b_conv2": (64,), "b/b_fc": (1024,),
                      "b/out": (10,)}
    # Glorot uniform: limit sqrt(6 / (fan_in + fan_out)); for W_fc, fan_in 3136 and fan_out 1024.
    limit = (6 / (3136 + 1024)) ** 0.5
    w_fc = weights["W_fc"].numpy()
    assert np.abs(w_fc).max() <= limit and np.abs(w_fc).max() > 0.99 * limit
    assert all(not b.numpy().any() for b in biases.values())
    again, _ = cc.new_weights_and_biases(seed=1)
    other, _ = cc.new_weights_and_biases(seed=2)
    np.testing.assert_array_equal(again["W_conv2"].numpy(), weights["W_conv2"].numpy())
    assert not np.array_equal(other["W_conv2"].numpy(), weights["W_conv2"].numpy())
    assert not np.array_equal(weights["W_conv1"].numpy().ravel()[:10], weights["W_fc"].numpy().ravel()[:10])


def test_dropout_only_in_training(mnist):
    weights, biases = init_params("glorot", seed=0)
    x = mnist.x_test[:32].reshape(-1, 784).astype(np.float32) / 255.0
    a = cc.convolutional_neural_network(x, weights, biases).numpy()
    np.testing.assert_array_equal(a, cc.convolutional_neural_network(x, weights, biases).numpy())
    assert not np.array_equal(a, cc.convolutional_neural_network(x, weights, biases, training=True).numpy())


@pytest.mark.slow
def test_the_keras_version_learns_in_a_few_real_steps(mnist, capsys):
    # Measured (2026-11-27): 84.9% of the test digits right after 15 steps; chance is 10%.
    _, keras_acc = cc.train_keras_network(mnist, max_steps=15)
    assert capsys.readouterr().out.count("Accuracy:") == 1
    assert keras_acc > 0.7


def test_both_versions_on_the_page_learned_in_the_build(executed_book):
    """The low-level version learns: the build ran the page's copy of it (40 steps in the CI
    profile, a whole epoch in the full one), which tests/test_complete_code_page.py checks
    trains exactly like the package's; its printed accuracies, and the Keras version's, are
    read from the executed page."""
    import nbformat

    page = nbformat.read(executed_book / "complete_code.ipynb", as_version=4)
    printed = "".join(out.get("text", "") for cell in page.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []) if out.get("name") == "stdout")
    assert "Epoch 1 completed out of 1 loss:" in printed
    accuracies = [float(v) for v in re.findall(r"^Accuracy: ([0-9.]+)$", printed, re.M)]
    assert len(accuracies) == 2 and min(accuracies) > 0.85, accuracies
