"""mnist_lessons.numpy_ops: every from-scratch NumPy op agrees with its TensorFlow twin."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons import numpy_ops as ops

RNG = np.random.default_rng(0)
TOL = dict(rtol=1e-5, atol=1e-5)


def _tf(x):
    return tf.constant(np.asarray(x, dtype=np.float32))


@pytest.mark.parametrize("size, window, stride", [(28, 5, 1), (7, 2, 2), (9, 4, 2), (10, 3, 3), (5, 5, 1)])
def test_same_padding_gives_tf_output_sizes(size, window, stride):
    before, after = ops.same_padding(size, window, stride)
    assert after - before in (0, 1), "the odd zero goes after"
    assert (size + before + after - window) // stride + 1 == -(-size // stride)


@pytest.mark.parametrize("h, w, cin, cout, k, stride, padding", [
    (28, 28, 1, 4, 5, 1, "SAME"),   # the article's first layer, fewer filters
    (14, 14, 3, 2, 5, 1, "SAME"),
    (7, 9, 2, 3, 4, 2, "SAME"),     # even kernel and stride 2: SAME pads unevenly
    (8, 5, 1, 2, 2, 1, "SAME"),     # even kernel, stride 1: the one zero of padding goes after
    (9, 9, 2, 2, 3, 2, "VALID"),
    (6, 7, 3, 1, 3, 1, "VALID"),
])
def test_conv2d_numpy_matches_tf(h, w, cin, cout, k, stride, padding):
    x = RNG.normal(size=(2, h, w, cin))
    kernel = RNG.normal(size=(k, k, cin, cout))
    expected = tf.nn.conv2d(_tf(x), _tf(kernel), strides=stride, padding=padding).numpy()
    got = ops.conv2d_numpy(x, kernel, stride, padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **TOL)


def test_conv2d_numpy_does_not_flip_the_kernel():
    x = RNG.normal(size=(1, 6, 6, 1))
    kernel = RNG.normal(size=(3, 3, 1, 1))
    flipped = kernel[::-1, ::-1]
    expected = tf.nn.conv2d(_tf(x), _tf(kernel), 1, "SAME").numpy()
    assert not np.allclose(ops.conv2d_numpy(x, flipped), expected, atol=1e-3)
    np.testing.assert_allclose(ops.conv2d_numpy(x, kernel), expected, **TOL)


def test_conv2d_numpy_by_hand_on_a_tiny_image():
    image = np.arange(9.0).reshape(1, 3, 3, 1)        # 0 1 2 / 3 4 5 / 6 7 8
    kernel = np.zeros((2, 2, 1, 1))
    kernel[0, 0, 0, 0], kernel[1, 1, 0, 0] = 1, -1     # top-left minus bottom-right
    out = ops.conv2d_numpy(image, kernel, padding="VALID")[0, :, :, 0]
    np.testing.assert_array_equal(out, [[0 - 4, 1 - 5], [3 - 7, 4 - 8]])


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("h, w, window, stride, padding", [
    (28, 28, 2, 2, "SAME"), (7, 7, 2, 2, "SAME"), (9, 6, 3, 2, "SAME"), (5, 8, 2, 1, "VALID"),
    (7, 5, 3, 3, "SAME"),
])
def test_pool2d_numpy_matches_tf(mode, h, w, window, stride, padding):
    x = RNG.normal(size=(2, h, w, 3))
    tf_pool = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
    expected = tf_pool(_tf(x), ksize=window, strides=stride, padding=padding).numpy()
    got = ops.pool2d_numpy(x, window, stride, padding, mode)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **TOL)


def test_max_pool_ignores_padding_even_when_all_values_are_negative():
    x = -np.ones((1, 3, 3, 1))
    assert ops.pool2d_numpy(x, 2, 2, "SAME").max() == -1.0  # a zero pad would give 0


def test_relu_and_dense_match_tf():
    x = RNG.normal(size=(4, 6))
    np.testing.assert_allclose(ops.relu_numpy(x), tf.nn.relu(_tf(x)).numpy(), **TOL)
    w, b = RNG.normal(size=(6, 3)), RNG.normal(size=3)
    np.testing.assert_allclose(ops.dense_numpy(x, w, b), (tf.matmul(_tf(x), _tf(w)) + _tf(b)).numpy(), **TOL)
    with pytest.raises(ValueError, match="inputs"):
        ops.dense_numpy(x, w.T, b)


def test_dropout_numpy_drops_the_rate_and_keeps_the_mean():
    x = np.ones((200, 500))
    out = ops.dropout_numpy(x, 0.2, np.random.default_rng(1))
    assert (out == 0).mean() == pytest.approx(0.2, abs=0.005)
    assert set(np.unique(out)) == {0.0, 1.25}
    assert out.mean() == pytest.approx(1.0, abs=0.01)
    tf_out = tf.nn.dropout(_tf(x), rate=0.2, seed=1).numpy()
    assert set(np.round(np.unique(tf_out), 5)) == {0.0, 1.25}   # same scaling as TensorFlow
    with pytest.raises(ValueError, match="share dropped"):
        ops.dropout_numpy(x, 1.0)


def test_softmax_forms_agree_until_the_naive_one_overflows():
    z = RNG.normal(size=(5, 10)) * 3
    expected = tf.nn.softmax(_tf(z)).numpy()
    np.testing.assert_allclose(ops.softmax_naive(z), expected, **TOL)
    np.testing.assert_allclose(ops.softmax_stable(z), expected, **TOL)
    big = np.array([[1000.0, 999.0, 0.0]])
    assert np.isnan(ops.softmax_naive(big)).any()
    np.testing.assert_allclose(ops.softmax_stable(big), tf.nn.softmax(_tf(big)).numpy(), **TOL)


def test_cross_entropy_matches_both_tf_forms():
    z = RNG.normal(size=(6, 10)) * 2
    y = RNG.integers(0, 10, size=6)
    sparse = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=_tf(z)).numpy()
    dense = tf.nn.softmax_cross_entropy_with_logits(labels=_tf(np.eye(10)[y]), logits=_tf(z)).numpy()
    np.testing.assert_allclose(ops.cross_entropy_numpy(y, z), sparse, **TOL)
    np.testing.assert_allclose(ops.cross_entropy_numpy(np.eye(10)[y], z), dense, **TOL)
    assert np.isfinite(ops.cross_entropy_numpy(np.array([0]), np.array([[-1000.0, 1000.0]]))).all()


def test_bad_shapes_get_clear_errors():
    with pytest.raises(ValueError, match=r"img\[None, :, :, None\]"):
        ops.conv2d_numpy(np.zeros((28, 28)), np.zeros((5, 5, 1, 1)))
    with pytest.raises(ValueError, match="1 channel"):
        ops.conv2d_numpy(np.zeros((1, 8, 8, 1)), np.zeros((3, 3, 2, 1)))
    with pytest.raises(ValueError, match="does not fit"):
        ops.conv2d_numpy(np.zeros((1, 3, 3, 1)), np.zeros((5, 5, 1, 1)), padding="VALID")
    with pytest.raises(ValueError, match="'SAME' or 'VALID'"):
        ops.pool2d_numpy(np.zeros((1, 4, 4, 1)), padding="same")
    with pytest.raises(ValueError, match="'max' or 'avg'"):
        ops.pool2d_numpy(np.zeros((1, 4, 4, 1)), mode="min")
    with pytest.raises(ValueError, match="0..9"):
        ops.cross_entropy_numpy(np.array([10]), np.zeros((1, 10)))



def _measured_patch(layers, side=48):
    """Measure with TensorFlow's gradients the input patch one output value depends on.

    Every layer is built as a convolution with an all-ones kernel and no padding, so the stack is
    linear with positive weights: d(output)/d(input) is positive exactly on the pixels the output
    depends on. Returns the patch's (height, width) and how many pixels the patch moves when the
    output moves by one row."""
    x = tf.Variable(tf.zeros([1, side, side, 1]))
    with tf.GradientTape(persistent=True) as tape:
        y = x
        for window, stride in layers:
            y = tf.nn.conv2d(y, tf.ones([window, window, 1, 1]), strides=stride, padding="VALID")
        i = y.shape[1] // 2
        here, below = y[0, i, i, 0], y[0, i + 1, i, 0]
    patches = []
    for out in (here, below):
        rows, cols = np.nonzero(tape.gradient(out, x).numpy()[0, :, :, 0])
        assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) == len(rows), "a square"
        patches.append((rows.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
    (top, height, width), (next_top, _, _) = patches
    return (height, width), next_top - top


@pytest.mark.parametrize("layers", [
    [(5, 1), (2, 2), (5, 1), (2, 2)],   # the article's conv1, pool1, conv2, pool2
    [(3, 1), (3, 1), (3, 1)],           # three 3x3 convolutions see 7x7
    [(3, 2), (3, 2), (2, 1)],
    [(7, 3), (1, 1), (2, 2)],           # a 1x1 layer changes nothing
    [(1, 1)],
])
def test_receptive_field_matches_the_patch_gradients_depend_on(layers):
    size, spacing = ops.receptive_field(layers)[-1]
    (height, width), shift = _measured_patch(layers)
    assert (height, width) == (size, size)
    assert shift == spacing


def test_receptive_field_of_the_article_network_after_each_layer():
    assert ops.receptive_field([(5, 1), (2, 2), (5, 1), (2, 2)]) == [(5, 1), (6, 2), (14, 2), (16, 4)]
    assert ops.receptive_field([]) == []


def test_receptive_field_holds_for_the_real_network_with_relu_max_pooling_and_padding():
    # The article's network itself (random weights, SAME padding, ReLU, max pooling): over a few
    # random images, the pixels that pool2 at row 3, column 3 depends on form a 16x16 patch, and
    # the patch of the next column starts 4 pixels further right.
    from mnist_lessons.model import ArticleCNN

    model = ArticleCNN()
    x = tf.Variable(RNG.random((8, 28, 28, 1)).astype(np.float32))
    starts = []
    for col in (3, 4):
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(model.stages(x)["pool2"][:, 3, col, :])
        touched = np.abs(tape.gradient(value, x).numpy()).sum(axis=(0, 3)) > 0
        rows, cols = np.nonzero(touched)
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (16, 16)
        starts.append(cols.min())
    assert starts[1] - starts[0] == 4


def test_receptive_field_explains_bad_layers():
    with pytest.raises(ValueError, match="pair"):
        ops.receptive_field([5])
    with pytest.raises(ValueError, match="window must be a positive integer"):
        ops.receptive_field([(0, 1)])
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        ops.receptive_field([(3, 1.5)])
