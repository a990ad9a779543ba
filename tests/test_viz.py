"""mnist_lessons.viz: each figure has the right panels, and wrong input gets a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from mnist_lessons import viz


def _images_drawn(fig: Figure) -> list[np.ndarray]:
    return [im.get_array() for ax in fig.axes for im in ax.get_images()]


def test_plot_digits_draws_one_panel_per_image_with_its_label(mnist):
    fig = viz.plot_digits(mnist.x_train[:12], mnist.y_train[:12], n_cols=6)
    assert isinstance(fig, Figure) and len(fig.axes) == 12
    # MNIST's first twelve training labels (read from the original IDX file).
    assert [ax.get_title() for ax in fig.axes] == ["5", "0", "4", "1", "9", "2", "1", "3", "1",
                                                   "4", "3", "5"]
    drawn = _images_drawn(fig)
    assert len(drawn) == 12
    for shown, image in zip(drawn, mnist.x_train[:12]):
        np.testing.assert_array_equal(shown, image)


def test_plot_digits_marks_wrong_predictions(mnist):
    preds = mnist.y_test[:3].copy()
    preds[1] = 9
    fig = viz.plot_digits(mnist.x_test[:3], mnist.y_test[:3], predictions=preds)
    assert fig.axes[1].get_title() == "9 (true 2)"
    assert fig.axes[0].get_title() == "7"


def test_plot_digits_rejects_a_single_image_and_mismatched_labels(mnist):
    with pytest.raises(ValueError, match="pass a batch"):
        viz.plot_digits(mnist.x_train[0])
    with pytest.raises(ValueError, match="expected 4 labels"):
        viz.plot_digits(mnist.x_train[:4], mnist.y_train[:3])


def test_plot_class_counts_bars_are_the_counts(mnist):
    fig = viz.plot_class_counts(mnist.y_train, mnist.y_test)
    bars = fig.axes[0].patches
    assert len(bars) == 20
    # MNIST's published class counts: training bars first, then test bars.
    assert [b.get_height() for b in bars[:10]] == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                   6265, 5851, 5949]
    assert [b.get_height() for b in bars[10:]] == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                   974, 1009]
    # Side by side: each digit's training bar just left of its test bar, both on the digit.
    for digit in range(10):
        train_bar, test_bar = bars[digit], bars[10 + digit]
        assert digit - 0.5 < train_bar.get_x() < test_bar.get_x() < digit + 0.5


def test_plot_pixel_histogram_counts_every_pixel(mnist):
    fig = viz.plot_pixel_histogram(mnist.x_test[:50])
    assert sum(p.get_height() for p in fig.axes[0].patches) == 50 * 784


def test_mean_digits_are_class_averages(mnist):
    # Twenty flat images: image i is all i, labelled i % 10, so digit d averages d and d + 10.
    images = np.repeat(np.arange(20, dtype=np.uint8), 28 * 28).reshape(20, 28, 28)
    means = viz.mean_digits(images, np.arange(20) % 10)
    assert means.shape == (10, 28, 28)
    np.testing.assert_array_equal(means, np.broadcast_to(np.arange(10.0)[:, None, None] + 5,
                                                         (10, 28, 28)))
    fig = viz.plot_mean_digits(mnist.x_test, mnist.y_test)
    assert len(fig.axes) == 10 and fig.axes[3].get_title() == "mean 3"
    with pytest.raises(ValueError, match="no image of digit"):
        viz.mean_digits(mnist.x_test[:5], mnist.y_test[:5])


def test_plot_digit_values_writes_all_784_numbers(mnist):
    fig = viz.plot_digit_values(mnist.x_train[0])
    texts = fig.axes[0].texts
    assert len(texts) == 784
    assert texts[0].get_text() == "0"
    assert max(int(t.get_text()) for t in texts) == mnist.x_train[0].max()
    with pytest.raises(ValueError, match="pass x\\[i\\]"):
        viz.plot_digit_values(mnist.x_train[:2])


def test_plot_bars_labels_each_value():
    fig = viz.plot_bars([800, 51200], ["conv1", "conv2"], xlabel="parameters")
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.texts] == [" 800", " 51,200"]
    with pytest.raises(ValueError, match="2 values but 1 labels"):
        viz.plot_bars([1, 2], ["a"])


class _FakeHistory:
    def __init__(self, losses, evaluations):
        self.step_losses, self.evaluations = losses, evaluations


def test_plot_training_curves_draws_one_line_per_run_in_both_panels():
    runs = {"a": _FakeHistory(list(np.linspace(2, 0.1, 100)), [(50, 1.0, 0.9), (100, 2.0, 0.95)]),
            "b": _FakeHistory(list(np.linspace(3, 0.2, 100)), [(100, 2.0, 0.93)])}
    fig = viz.plot_training_curves(runs, smooth=10)
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(acc_ax.lines) == 2
    assert len(loss_ax.lines[0].get_xdata()) == 91  # moving average of 10 over 100 steps
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), [90, 95])
    with pytest.raises(ValueError, match="at least one history"):
        viz.plot_training_curves({})


def test_plot_confusion_matrix_prints_every_nonzero_count():
    m = np.diag(np.arange(1, 11))
    m[3, 5] = 7                      # true 3, predicted 5: row 3, column 5
    fig = viz.plot_confusion_matrix(m)
    printed = {tuple(map(int, t.get_position())): t.get_text() for t in fig.axes[0].texts}
    expected = {(d, d): str(d + 1) for d in range(10)}  # (column, row) -> count
    expected[(5, 3)] = "7"
    assert len(fig.axes[0].texts) == 11 and printed == expected
    with pytest.raises(ValueError, match="10x10"):
        viz.plot_confusion_matrix(np.zeros((3, 3)))


def test_plot_mistakes_titles_prediction_confidence_and_truth(mnist):
    from mnist_lessons.evaluate import misclassified

    probs = np.full((5, 10), 0.01)
    # Every prediction is label + 1, image 4 the most confident, then 3, 2...
    probs[np.arange(5), [1, 2, 3, 4, 5]] = [0.5, 0.6, 0.7, 0.8, 0.9]
    mistakes = misclassified(np.array([0, 1, 2, 3, 4]), probs)
    fig = viz.plot_mistakes(mnist.x_test[:5], mistakes, n=3)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["5 (90%)\ntrue 4", "4 (80%)\ntrue 3",
                                                   "3 (70%)\ntrue 2"]
    for shown, index in zip(_images_drawn(fig), [4, 3, 2]):
        np.testing.assert_array_equal(shown, mnist.x_test[index])


def test_plot_activation_scales_groups_bars_per_stage():
    scales = {"a": {"conv1": 1.0, "fc": 10.0}, "b": {"conv1": 2.0, "fc": 0.5}}
    fig = viz.plot_activation_scales(scales)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 4
    # Run a's bars, then run b's; at each stage (x = 0, 1) a stands left of b, touching it.
    centres = [round(b.get_x() + b.get_width() / 2, 6) for b in bars]
    assert centres == [-0.2, 0.8, 0.2, 1.2]
    assert [round(b.get_width(), 6) for b in bars] == [0.4] * 4
    assert [b.get_height() for b in bars] == [1.0, 10.0, 2.0, 0.5]
    assert bars[0].get_facecolor() == bars[1].get_facecolor() != bars[2].get_facecolor()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "fc"]
    with pytest.raises(ValueError, match="same stages"):
        viz.plot_activation_scales({"a": {"conv1": 1.0}, "b": {"fc": 1.0}})


def test_plot_flat_and_image_shows_the_strip_and_the_square(mnist):
    fig = viz.plot_flat_and_image(mnist.x_train[0].reshape(784))
    strip, square = (ax.get_images()[0].get_array() for ax in fig.axes)
    assert strip.shape == (1, 784) and square.shape == (28, 28)
    np.testing.assert_array_equal(square, mnist.x_train[0])
    with pytest.raises(ValueError, match="one image"):
        viz.plot_flat_and_image(mnist.x_train[:2])


def test_plot_filters_one_panel_per_filter_on_a_shared_symmetric_scale():
    from mnist_lessons.model import init_params

    weights, _ = init_params("glorot", 0)
    fig = viz.plot_filters(weights["W_conv1"].numpy())
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 32 and len(fig.axes) == 33  # 32 filters and the colour bar
    limits = {ax.get_images()[0].get_clim() for ax in panels}
    (low, high), = limits
    assert low == -high == -np.abs(weights["W_conv1"].numpy()).max()
    conv2 = weights["W_conv2"].numpy()
    fig2 = viz.plot_filters(conv2, in_channel=5)
    np.testing.assert_array_equal(fig2.axes[0].get_images()[0].get_array(), conv2[:, :, 5, 0])
    with pytest.raises(ValueError, match="pick one with in_channel"):
        viz.plot_filters(conv2)
    with pytest.raises(ValueError, match="KH, KW, C_in, C_out"):
        viz.plot_filters(np.zeros((5, 5, 32)))


def test_plot_feature_maps_and_stages_label_shapes(mnist):
    from mnist_lessons.model import ArticleCNN

    stages = ArticleCNN().stages(mnist.x_test[:1].astype(np.float32) / 255)
    fig = viz.plot_feature_maps(stages["relu1"], n=12)
    assert sum(1 for ax in fig.axes if ax.get_title().startswith("map")) == 12
    assert "12 of 32 feature maps, 28x28" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="maps of one image"):
        viz.plot_feature_maps(np.zeros((2, 28, 28, 32)))
    fig = viz.plot_stages(stages, n=4)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["conv1\n28x28x32", "relu1\n28x28x32", "pool1\n14x14x32",
                      "conv2\n14x14x64", "pool2\n7x7x64"]
    with pytest.raises(ValueError, match="not in the dict"):
        viz.plot_stages({"conv1": stages["conv1"]})


def test_plot_kernel_effects_three_panels_per_kernel(mnist):
    from mnist_lessons.numpy_ops import HAND_KERNELS

    fig = viz.plot_kernel_effects(mnist.x_test[0] / 255, {k: HAND_KERNELS[k] for k in ("blur", "sharpen")})
    assert len(fig.axes) == 6 and fig.axes[3].get_title() == "sharpen kernel"
    with pytest.raises(ValueError, match="one digit"):
        viz.plot_kernel_effects(mnist.x_test[:2], HAND_KERNELS)


def test_plot_probabilities_highlights_the_largest():
    fig = viz.plot_probabilities(np.array([0.1, 0.7, 0.2]))
    bars = fig.axes[0].patches
    assert [round(b.get_height(), 2) for b in bars] == [0.1, 0.7, 0.2]
    assert bars[0].get_facecolor() == bars[2].get_facecolor() != bars[1].get_facecolor()
    with pytest.raises(ValueError, match="one probability vector"):
        viz.plot_probabilities(np.ones((2, 3)))


def test_plot_maps_row_titles_each_map_with_its_size():
    fig = viz.plot_maps_row([np.zeros((28, 28)), np.zeros((14, 14))], ["relu1", "pool1"])
    assert [ax.get_title() for ax in fig.axes] == ["relu1\n28x28", "pool1\n14x14"]
    with pytest.raises(ValueError, match="one title per map"):
        viz.plot_maps_row([np.zeros((2, 2))], [])
    with pytest.raises(ValueError, match="2-D"):
        viz.plot_maps_row([np.zeros((2, 2, 2))], ["x"])
