"""Spatial arithmetic: output sizes, where a value's patch lies, what each layer costs, and
the figures that show them, each checked against TensorFlow, Keras or hand-derived numbers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.patches import Rectangle

from mnist_lessons import viz
from mnist_lessons.model import ArticleCNN, build_keras_model
from mnist_lessons.numpy_ops import (ARTICLE_LAYERS, conv_output_size, layer_costs,
                                     receptive_field_span)

ARTICLE = [(5, 1), (2, 2), (5, 1), (2, 2)]  # conv1, pool1, conv2, pool2 as (window, stride)


# ---- the output size formula -------------------------------------------------------------

@pytest.mark.parametrize("size, window, padding, stride", [
    (28, 5, 2, 1), (28, 5, 0, 1), (5, 3, 1, 1), (5, 3, 1, 2), (28, 5, 2, 2), (14, 5, 2, 1),
    (7, 2, 0, 2), (9, 4, 1, 3), (10, 3, 0, 3), (6, 6, 0, 1), (3, 5, 1, 1), (11, 1, 0, 4),
])
def test_output_size_formula_matches_tf_conv2d_with_explicit_padding(size, window, padding, stride):
    got = tf.nn.conv2d(tf.zeros([1, size, size + 1, 1]), tf.zeros([window, window, 1, 1]),
                       strides=stride, padding=[[0, 0], [padding, padding], [padding, padding], [0, 0]])
    assert conv_output_size(size, window, stride, padding) == got.shape[1]
    assert conv_output_size(size + 1, window, stride, padding) == got.shape[2]


@pytest.mark.parametrize("size, window, stride", [(28, 5, 1), (28, 2, 2), (14, 2, 2), (7, 2, 2),
                                                  (9, 4, 3), (8, 1, 3)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_output_size_with_tf_padding_names_matches_conv2d_and_max_pool(size, window, stride, padding):
    conv = tf.nn.conv2d(tf.zeros([1, size, size, 1]), tf.zeros([window, window, 1, 1]), stride, padding)
    pool = tf.nn.max_pool2d(tf.zeros([1, size, size, 1]), window, stride, padding)
    assert conv_output_size(size, window, stride, padding) == conv.shape[1] == pool.shape[1]


def test_output_size_hand_derived_values_of_the_article():
    assert conv_output_size(28, 5, 1, 2) == 28        # conv1: (28 - 5 + 4) / 1 + 1
    assert conv_output_size(28, 5) == 24              # VALID: 28 - 5 + 1
    assert conv_output_size(28, 2, 2) == 14           # pool1: floor(26 / 2) + 1
    assert conv_output_size(7, 2, 2) == 3             # floor(5 / 2) + 1, the last row ignored
    assert conv_output_size(7, 2, 2, "SAME") == 4     # ceil(7 / 2)


@pytest.mark.parametrize("args, message", [
    ((3, 5), "does not fit in 3 pixels"),
    ((28, 5, 1, -1), "number of zeros on each side"),
    ((28, 5, 1, 1.5), "number of zeros on each side"),
    ((28, 5, 1, "same"), "padding must be 'SAME' or 'VALID'"),
    ((28, 5, 0), "stride must be a positive integer"),
    ((0, 5), "size must be a positive integer"),
])
def test_output_size_rejects_impossible_settings_with_a_clear_message(args, message):
    with pytest.raises(ValueError, match=message):
        conv_output_size(*args)


# ---- where one value's patch lies ----------------------------------------------------------

def _measured_span(n_layers: int, index: int) -> tuple[int, int]:
    """Rows of a 28 x 28 input with a non-zero gradient for one value, measured with
    GradientTape through all-ones 5 x 5 convolutions and 2 x 2 average pools (same windows as
    the article, and every input in the window counts, so the gradient marks the whole patch)."""
    x = tf.ones([1, 28, 28, 1])
    ops = [lambda t: tf.nn.conv2d(t, tf.ones([5, 5, 1, 1]), 1, "SAME"),
           lambda t: tf.nn.avg_pool2d(t, 2, 2, "SAME")] * 2
    with tf.GradientTape() as tape:
        tape.watch(x)
        t = x
        for op in ops[:n_layers]:
            t = op(t)
        value = t[0, index, index, 0]
    rows = np.nonzero(tape.gradient(value, x).numpy()[0, :, :, 0].any(axis=1))[0]
    return int(rows.min()), int(rows.max())


@pytest.mark.parametrize("n_layers, index", [(1, 0), (1, 13), (2, 0), (2, 6), (2, 13), (3, 7),
                                             (4, 0), (4, 3), (4, 6)])
def test_receptive_field_span_matches_the_gradient_measured_in_tf(n_layers, index):
    first, last = receptive_field_span(ARTICLE[:n_layers], index)
    assert (max(first, 0), min(last, 27)) == _measured_span(n_layers, index)


def test_receptive_field_span_hand_derived_pool2_values():
    assert receptive_field_span(ARTICLE, 3) == (6, 21)   # 16 pixels, chapter 7's measurement
    assert receptive_field_span(ARTICLE, 0) == (-6, 9)   # 6 pixels of it in the padding
    assert receptive_field_span([(5, 1)], 0) == (-2, 2)


def test_receptive_field_span_rejects_a_position_outside_the_map():
    with pytest.raises(ValueError, match="0 to 6"):
        receptive_field_span(ARTICLE, 7)
    with pytest.raises(ValueError, match="at least one"):
        receptive_field_span([], 0)


# ---- what each layer costs ------------------------------------------------------------------

def test_layer_costs_hand_derived_multiply_adds_of_the_article():
    macs = {row["name"]: row["macs"] for row in layer_costs()}
    assert macs == {"conv1": 28 * 28 * 5 * 5 * 1 * 32, "pool1": 0,
                    "conv2": 14 * 14 * 5 * 5 * 32 * 64, "pool2": 0,
                    "fc": 7 * 7 * 64 * 1024, "out": 1024 * 10}
    assert sum(macs.values()) == 13_883_904          # "13.9 M multiply-adds forward"


def test_layer_costs_parameters_match_keras_count_params():
    keras_model = build_keras_model()
    for row in layer_costs():
        assert row["params"] == keras_model.get_layer(row["name"]).count_params(), row["name"]


def test_layer_costs_shapes_and_activations_match_the_networks_stages(mnist):
    stages = ArticleCNN().stages(mnist.x_test[:2].astype(np.float32) / 255.0)
    for row in layer_costs():
        stage = stages["logits" if row["name"] == "out" else row["name"]]
        assert tuple(stage.shape[1:]) == row["output_shape"]
        assert int(np.prod(stage.shape[1:])) == row["activations"]


def test_layer_costs_for_another_network_and_its_errors():
    rows = layer_costs([{"name": "c", "kind": "conv", "window": 3, "filters": 8, "stride": 2},
                        {"name": "d", "kind": "dense", "units": 4}], input_shape=(9, 9, 3))
    assert rows[0]["output_shape"] == (5, 5, 8) and rows[0]["macs"] == 5 * 5 * 3 * 3 * 3 * 8
    assert rows[0]["params"] == 3 * 3 * 3 * 8 + 8 and rows[1]["macs"] == 200 * 4
    with pytest.raises(ValueError, match="'kind' one of"):
        layer_costs([{"name": "x", "kind": "lstm"}])
    with pytest.raises(ValueError, match="comes after a dense layer"):
        layer_costs([{"kind": "dense", "units": 3}, {"kind": "pool", "window": 2, "stride": 2}])
    with pytest.raises(ValueError, match=r"\(height, width, channels\)"):
        layer_costs(ARTICLE_LAYERS, input_shape=(28, 28))


# ---- the figures ----------------------------------------------------------------------------

def test_sliding_window_titles_give_tf_conv2d_values_and_draw_the_padding():
    image = np.arange(25.0).reshape(5, 5)
    kernel = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    expected = tf.nn.conv2d(image[None, :, :, None], kernel[:, :, None, None], 2, "SAME").numpy()[0, :, :, 0]
    fig = viz.plot_sliding_window(image, kernel, [(0, 0), (1, 2)], padding=1, stride=2)
    axes = fig.axes
    assert len(axes) == 6
    assert axes[2].get_title() == f"output[0, 0] = {expected[0, 0]:g}"
    assert axes[5].get_title() == f"output[1, 2] = {expected[1, 2]:g}"
    assert axes[0].images[0].get_array().shape == (7, 7)       # 5 x 5 plus one zero each side
    window = [p for p in axes[3].patches if isinstance(p, Rectangle)][0]
    assert (window.get_x(), window.get_y(), window.get_width()) == (4 - 0.5, 2 - 0.5, 3)
    with pytest.raises(ValueError, match="3 x 3 output"):
        viz.plot_sliding_window(image, kernel, [(3, 0)], padding=1, stride=2)


def test_layer_costs_chart_bars_are_the_counts():
    costs = layer_costs()
    fig = viz.plot_layer_costs(costs)
    assert len(fig.axes) == 3
    widths = [bar.get_width() for bar in fig.axes[0].patches][::-1]
    np.testing.assert_allclose(widths, [c["macs"] / 1e6 for c in costs])
    shares = [t.get_text().strip() for t in fig.axes[0].texts][::-1]
    assert shares[2] == "72%"                                   # conv2: 10,035,200 / 13,883,904
    with pytest.raises(ValueError, match="layer_costs"):
        viz.plot_layer_costs([{"name": "x"}])


def test_value_grids_write_every_value_and_outline_the_windows():
    grid = np.arange(16.0).reshape(4, 4)
    fig = viz.plot_value_grids([grid, np.zeros((4, 4))], ["a", "b"], window=2)
    assert [t.get_text() for t in fig.axes[0].texts] == [f"{v:g}" for v in grid.ravel()]
    assert len(fig.axes[0].patches) == 4
    with pytest.raises(ValueError, match="one title per grid"):
        viz.plot_value_grids([grid], ["a", "b"])


def test_receptive_field_figure_draws_the_hand_derived_patch_sizes(mnist):
    layers = dict(zip(["conv1", "pool1", "conv2", "pool2"], ARTICLE))
    fig = viz.plot_receptive_fields(mnist.x_test[0], layers, pixel=(14, 14))
    squares = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert [(s.get_width(), s.get_height()) for s in squares] == [(5, 5), (6, 6), (14, 14), (16, 16)]
    with pytest.raises(ValueError, match="square 2-D image"):
        viz.plot_receptive_fields(np.zeros(784), layers, pixel=(14, 14))
