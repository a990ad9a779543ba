"""Calibration (reliability table, expected calibration error) and saliency (gradients, occlusion).

Oracles: a case worked out by hand, a per-answer loop over bins, known extremes (always right or
always wrong at full confidence), samples calibrated by construction, the exact gradient of a
linear model, finite differences of the real network, and hand-blanked images.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_lessons.evaluate import (
    confidence_and_correct,
    expected_calibration_error,
    gradient_saliency,
    occlusion_map,
    predict_logits,
    reliability_table,
    softmax,
)


@pytest.fixture(scope="module")
def course(mnist):
    from mnist_lessons.checkpoints import load_course_model

    return load_course_model(mnist).model


def test_ece_of_a_hand_built_case():
    # bins of 0.1: 0.95 x2 (one right: gap 0.45), 0.85 (right: 0.15), 0.55 (right: 0.45),
    # 0.15 (wrong: 0.15) -> (2 * 0.45 + 0.15 + 0.45 + 0.15) / 5 = 0.33
    conf = [0.95, 0.95, 0.85, 0.55, 0.15]
    right = [True, False, True, True, False]
    assert expected_calibration_error(conf, right) == pytest.approx(0.33)
    table = reliability_table(conf, right)
    assert table.counts.tolist() == [0, 1, 0, 0, 0, 1, 0, 0, 1, 2]
    assert table.accuracy[9] == 0.5 and table.confidence[9] == pytest.approx(0.95)
    assert np.isnan(table.accuracy[0]) and np.isnan(table.confidence[0])


def test_ece_extremes():
    assert expected_calibration_error(np.ones(50), np.ones(50, bool)) == 0.0
    assert expected_calibration_error(np.ones(50), np.zeros(50, bool)) == 1.0
    assert expected_calibration_error([0.3, 0.3], [1, 0], n_bins=1) == pytest.approx(0.2)


def test_reliability_table_matches_a_loop_over_answers():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 2000)
    right = rng.random(2000) < conf
    table = reliability_table(conf, right, n_bins=15)
    for i in range(15):
        lo, hi = i / 15, (i + 1) / 15
        members = [k for k in range(2000) if (lo < conf[k] <= hi) or (i == 0 and conf[k] == 0)]
        assert table.counts[i] == len(members)
        if members:
            assert table.confidence[i] == pytest.approx(sum(conf[k] for k in members) / len(members))
            assert table.accuracy[i] == pytest.approx(sum(right[k] for k in members) / len(members))


def test_ece_is_small_when_calibrated_by_construction_and_sees_overconfidence():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.2, 1.0, 200_000)
    calibrated = rng.random(conf.size) < conf           # right with probability = confidence
    overconfident = rng.random(conf.size) < conf - 0.1  # right 10 points less often
    assert expected_calibration_error(conf, calibrated) < 0.01
    assert expected_calibration_error(conf, overconfident) == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("args, message", [
    (([0.5, 0.7], [True]), "same length"),
    (([1.5], [True]), "[0, 1]"),
    (([0.5], [2]), "booleans"),
    (([0.5], [True], 0), "n_bins"),
    (([], []), "same length"),
])
def test_calibration_bad_input_gets_a_clear_error(args, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        expected_calibration_error(*args)


def test_course_model_calibration_on_the_real_test_set(mnist, course):
    logits = predict_logits(course, mnist.x_test)
    conf, right = confidence_and_correct(softmax(logits), mnist.y_test)
    table = reliability_table(conf, right)
    assert table.counts.sum() == 10_000
    assert table.counts[:1].sum() == 0  # the largest of 10 probabilities is at least 0.1
    # the bins' accuracies, weighted by their counts, give back the test accuracy
    filled = table.counts > 0
    overall = np.sum(table.accuracy[filled] * table.counts[filled]) / 10_000
    assert overall == pytest.approx(np.mean(logits.argmax(axis=1) == mnist.y_test))
    ece = expected_calibration_error(conf, right)
    assert 0 <= ece < 0.02, ece  # a 99%-accurate network that is sure of most answers


def test_gradient_saliency_of_a_linear_model_is_its_weight_column():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    W = tf.constant(rng.normal(size=(784, 10)).astype(np.float32))

    def linear(x, training=False):
        return tf.reshape(x, (-1, 784)) @ W

    grads = gradient_saliency(linear, np.zeros((3, 28, 28), np.float32), [0, 4, 9])
    for row, target in enumerate([0, 4, 9]):
        np.testing.assert_allclose(grads[row], W.numpy()[:, target].reshape(28, 28))


def test_gradient_saliency_matches_finite_differences_on_the_network(mnist, course):
    rng = np.random.default_rng(3)
    # A little noise on the digits: on MNIST's blank background every 2x2 pooling window holds
    # four equal values, where max-pooling has no derivative (the gradient goes to one of them,
    # while a finite difference follows whichever grows), and central differences there
    # disagree with any gradient (measured: 0.155 against 0.22 on the course model).
    x = mnist.x_test[:3].astype(np.float64) / 255.0 + rng.normal(scale=0.01, size=(3, 28, 28))
    targets = mnist.y_test[:3]
    grads = gradient_saliency(course, x.astype(np.float32), targets)
    for k in range(3):  # directional derivative along a random direction, central differences
        d = rng.normal(size=(28, 28))
        d /= np.linalg.norm(d)
        eps = 1e-2
        up = predict_logits(course, (x[k] + eps * d)[None].astype(np.float32))[0, targets[k]]
        down = predict_logits(course, (x[k] - eps * d)[None].astype(np.float32))[0, targets[k]]
        numeric = (up - down) / (2 * eps)
        assert float(np.sum(grads[k] * d)) == pytest.approx(float(numeric), rel=0.05, abs=0.05)


def test_occlusion_map_equals_probability_drops_of_hand_blanked_quadrants(mnist, course):
    image = mnist.x_test[0]
    target = int(mnist.y_test[0])
    result = occlusion_map(course, image, target, patch=14, stride=14)
    x = image.astype(np.float32) / 255.0
    p0 = softmax(predict_logits(course, x[None]))[0, target]
    for r in (0, 14):
        for c in (0, 14):
            blanked = x.copy()
            blanked[r:r + 14, c:c + 14] = 0
            drop = p0 - softmax(predict_logits(course, blanked[None]))[0, target]
            np.testing.assert_allclose(result[r:r + 14, c:c + 14], drop, atol=1e-6)


def test_occlusion_bad_patch_gets_a_clear_error(course):
    with pytest.raises(ValueError, match="patch must be an integer from 1 to 28"):
        occlusion_map(course, np.zeros((28, 28)), 3, patch=0)
