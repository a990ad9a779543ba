"""Chapter 10's teaching cells and the package code behind its figures.

The chapter writes the training step and Adam's update out in cells the reader runs. These tests
run those very cells (read from the notebook) and check them against independent references:
the package's ``make_train_step`` (same weights after the same steps from the same start) and
``keras.optimizers.Adam`` (same weights after the same gradients).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mnist_lessons import config
from mnist_lessons import train as train_module
from mnist_lessons.data import make_dataset, random_shift, validation_split
from mnist_lessons.model import ArticleCNN, Hyperparameters
from mnist_lessons.train import History, learning_rates, make_train_step

CH10 = Path(__file__).resolve().parents[1] / "book" / "ch10_training_with_adam.ipynb"


def _cell(cell_id: str) -> str:
    """The source of the chapter-10 cell with this id."""
    cells = [c for c in nbformat.read(CH10, as_version=4).cells if c.get("id") == cell_id]
    assert len(cells) == 1, f"chapter 10 has no single cell {cell_id!r}"
    return cells[0].source


def test_the_pages_training_step_gives_the_weights_of_the_packages(mnist):
    import keras
    import tensorflow as tf

    page: dict = {}
    exec(compile(_cell("train-step-code"), "ch10 train-step cell", "exec"), page)
    twin = ArticleCNN()  # the same seed, so the same start as the page's model
    for name, value in page["model"].get_weights().items():
        np.testing.assert_array_equal(value, twin.get_weights()[name])
    package_step = make_train_step(twin, keras.optimizers.Adam(learning_rate=1e-3), "float32")
    split = validation_split(mnist)
    start = twin.get_weights()
    for step, (images, labels) in enumerate(make_dataset(split.x_train, split.y_train, 128,
                                                         seed=0).take(4)):
        step = tf.constant(step, tf.int64)
        page_loss = page["train_step"](images, labels, step)
        package_loss, _ = package_step(images, labels, step)
        assert float(page_loss) == pytest.approx(float(package_loss), rel=1e-5)
        if int(step) == 0:
            # One step from the same weights on the same batch: the same update to float32
            # rounding (the page applies Keras's apply_gradients, the package the fused
            # kernel of the same formula).
            for name, value in page["model"].get_weights().items():
                np.testing.assert_allclose(value, twin.get_weights()[name], rtol=1e-5, atol=1e-7)
    # After that, rounding-level differences in the weights change the next gradients a little,
    # and Adam divides each gradient by its own running size, so for the few weights whose
    # gradients are tiny the differences grow (to 2% of their movement, measured). Over each
    # variable, after four steps, the two stay within 1% of how far the weights moved (0.15%
    # at most, measured).
    moved = 0.0
    for name, value in page["model"].get_weights().items():
        movement = np.linalg.norm(value - start[name])
        assert np.linalg.norm(value - twin.get_weights()[name]) < 0.01 * movement, name
        moved = max(moved, float(np.abs(value - start[name]).max()))
    assert moved > 1e-3  # four Adam steps really moved the weights (about 4 x lr each)


def test_the_pages_adam_update_matches_keras_adam_on_the_same_gradients():
    import keras
    import tensorflow as tf

    page: dict = {"np": np, "glue": lambda *a, **k: None}
    exec(compile(_cell("adam-code"), "ch10 adam cell", "exec"), page)
    # Independent reference: Keras, fed the page's gradients here, with its default settings.
    weights = keras.Variable(page["w_start"], dtype="float64")
    adam = keras.optimizers.Adam(learning_rate=1e-3)
    for g in page["gradients"]:
        adam.apply_gradients([(tf.constant(g), weights)])
    # The paper's form and Keras's differ only in where epsilon sits (relative 3e-6 / |g| at
    # most here), so on these gradients (0.1 and larger) they agree to well under 1e-6.
    np.testing.assert_allclose(page["w_numpy"], weights.numpy(), rtol=0, atol=1e-6)
    # Hand-derived: the first step is lr times the sign of the gradient (m_hat = g,
    # sqrt(v_hat) = |g|), whatever the gradient's size, up to epsilon.
    g1 = page["gradients"][0]
    np.testing.assert_allclose(page["first_step"], -1e-3 * np.sign(g1) * np.abs(g1) / (np.abs(g1) + 1e-7),
                               rtol=1e-9)


def test_epsilons_place_matters_for_tiny_gradients_as_the_page_says():
    page: dict = {"np": np, "glue": lambda *a, **k: None}
    exec(compile(_cell("adam-code") + "\n" + _cell("adam-tiny"), "ch10 adam cells", "exec"), page)
    # Hand-derived for g = 1e-8, t = 1: paper lr * g / (|g| + eps) = 1e-3 / 11; Keras
    # lr * sqrt(1 - b2) / (1 - b1) * 0.1 g / (sqrt(0.001) g + eps).
    assert page["paper"][0] == pytest.approx(1e-3 * 1e-8 / (1e-8 + 1e-7))
    keras_step = 1e-3 * np.sqrt(0.001) / 0.1 * 1e-9 / (np.sqrt(0.001) * 1e-8 + 1e-7)
    # (Keras computes its step-size factor in float32: agreement to 1e-4, not 1e-15.)
    assert -page["weight"].numpy()[0] == pytest.approx(keras_step, rel=1e-4)


def test_the_cosine_schedule_over_the_55000_training_images():
    hp = Hyperparameters(epochs=10, learning_rate=1e-3, lr_decay=0.02)
    steps, rates = learning_rates(hp)
    # 55,000 images in batches of 128: 429 full batches and one of 88, 430 steps an epoch.
    assert steps[-1] == 10 * 430
    half = 4300 // 2
    # Hand-derived: lr0 * (alpha + (1 - alpha) * (1 + cos(pi t / T)) / 2).
    assert rates[0] == pytest.approx(1e-3)
    assert rates[half] == pytest.approx(1e-3 * (0.02 + 0.98 * 0.5), rel=1e-5)
    assert rates[-1] == pytest.approx(2e-5, rel=1e-4)
    assert np.all(np.diff(rates) <= 1e-12)


def test_shifted_digits_are_the_originals_moved_by_at_most_two_pixels(mnist):
    originals = mnist.x_train[:32].astype(np.float32)[..., None] / 255.0
    moved = random_shift(originals, 2, seed=(0, 1)).numpy()[..., 0]
    offsets = []
    for original, shifted in zip(originals[..., 0], moved):
        # Independent check: shifted equals the original moved by (dy, dx) with zeros filled in.
        found = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                padded = np.pad(original, 2)
                candidate = padded[2 - dy:30 - dy, 2 - dx:30 - dx]
                if np.array_equal(candidate, shifted):
                    found.append((dy, dx))
        assert found, "a shifted digit is not a whole-pixel move of its original"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # the offsets differ from image to image


@pytest.mark.slow
def test_a_sweep_is_judged_on_validation_images_never_the_test_set_and_is_cached(
        mnist, tmp_path, monkeypatch):
    from mnist_lessons import checkpoints

    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path))
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "ci")
    tested = []
    monkeypatch.setattr(train_module, "accuracy_on_test_set", lambda *a: tested.append(a) or 0.0)
    points = checkpoints.learning_rate_sweep("sgd", [1e-3, 0.3], steps=8, data=mnist, verbose=False)
    assert not tested
    assert [p.learning_rate for p in points] == [1e-3, 0.3] and all(p.steps == 8 for p in points)
    # SGD at 0.001 barely moves in 8 steps; at 0.3 it learns (measured: about 10% vs 60-80%).
    assert points[0].validation_accuracy < points[1].validation_accuracy
    files = sorted((tmp_path / "models").glob("*.json"))
    assert len(files) == 2 and json.loads(files[0].read_text())["run"]["sweep"] == 1
    monkeypatch.setattr(checkpoints, "train", lambda *a, **k: pytest.fail("trained again"))
    again = checkpoints.learning_rate_sweep("sgd", [1e-3, 0.3], steps=8, data=mnist, verbose=False)
    assert again == points
    with pytest.raises(ValueError, match="rates must be positive learning rates"):
        checkpoints.learning_rate_sweep("adam", [0.0])
    with pytest.raises(ValueError, match="unknown optimizer"):
        checkpoints.learning_rate_sweep("rmsprop", [1e-3])


def test_the_ci_profile_keeps_the_sweep_small(monkeypatch):
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "ci")
    ci = config.settings()
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "full")
    full = config.settings()
    assert ci.sweep_steps * ci.sweep_points <= 100 < full.sweep_steps * full.sweep_points


def test_new_figures_have_their_panels_and_refuse_what_they_cannot_draw(mnist):
    from mnist_lessons.checkpoints import SweepPoint
    from mnist_lessons.viz import (
        plot_learning_rate_schedules,
        plot_learning_rate_sweep,
        plot_shifted_digits,
        plot_train_vs_validation,
    )

    fig = plot_shifted_digits(mnist.x_train[:5], [mnist.x_train[:5]] * 2)
    assert len(fig.axes) == 15
    with pytest.raises(ValueError, match="shape of the originals"):
        plot_shifted_digits(mnist.x_train[:5], [mnist.x_train[:4]])
    fig = plot_learning_rate_schedules({"a": learning_rates(Hyperparameters(epochs=1))})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    h = History(evaluations=[(10, 1.0, 0.9), (20, 2.0, 0.95)],
                training_evaluations=[(10, 0.92), (20, 0.99)])
    fig = plot_train_vs_validation({"run": h})
    gap = fig.axes[1].lines[0].get_ydata()
    np.testing.assert_allclose(gap, [2.0, 4.0])  # points: 92 - 90, 99 - 95
    with pytest.raises(ValueError, match="track_training=True"):
        plot_train_vs_validation({"run": History(evaluations=[(10, 1.0, 0.9)])})
    points = [SweepPoint("adam", r, 10, a, 0.5) for r, a in ((1e-4, 0.5), (1e-3, 0.9), (1e-2, 0.7))]
    fig = plot_learning_rate_sweep({"Adam": points})
    assert fig.axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="no points"):
        plot_learning_rate_sweep({"Adam": []})
