"""Numbers that repeat: the same seed gives the same batches, masks, and weights.

What "the same seed" promises (README, chapter 1): on the same CPU machine, with the same
library versions and thread settings, a run repeats bit for bit, in float32 and in bfloat16
(measured by these tests; TensorFlow itself guarantees it only with op determinism enabled). On a GPU, float32 matrix products stay
in full float32 (TensorFloat-32 is off after ``setup_course()``).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons import setup_course
from mnist_lessons.data import epoch_order, make_dataset, random_shift
from mnist_lessons.model import ArticleCNN, Hyperparameters
from mnist_lessons.train import train


def _weights_after_50_steps(mnist, precision: str, seed: int = 3) -> dict[str, np.ndarray]:
    hp = Hyperparameters(epochs=1, batch_size=64, shift=2, precision=precision, seed=seed)
    model = ArticleCNN(hp)
    train(model, mnist, max_steps=50, evaluate=False, verbose=False)
    return model.get_weights()


_FIRST_RUNS: dict[str, dict[str, np.ndarray]] = {}  # seed 3's run, by precision (read only)


def _first_run(mnist, precision: str) -> dict[str, np.ndarray]:
    if precision not in _FIRST_RUNS:
        _FIRST_RUNS[precision] = _weights_after_50_steps(mnist, precision)
    return _FIRST_RUNS[precision]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_two_runs_with_the_same_seed_give_bit_identical_weights_on_the_cpu(mnist, precision):
    first = _first_run(mnist, precision)
    second = _weights_after_50_steps(mnist, precision)
    start = ArticleCNN(Hyperparameters(seed=3)).get_weights()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        assert first[key].dtype == np.float32
    assert not np.array_equal(first["weights/W_conv1"], start["weights/W_conv1"])  # it trained


@pytest.mark.slow
def test_another_seed_gives_other_weights(mnist):
    a = _first_run(mnist, "float32")  # seed 3
    b = _weights_after_50_steps(mnist, "float32", seed=4)
    assert not np.array_equal(a["weights/W_fc"], b["weights/W_fc"])


def test_each_epoch_has_its_own_repeatable_order_covering_every_image():
    first, again, second = epoch_order(1000, 7, 0), epoch_order(1000, 7, 0), epoch_order(1000, 7, 1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.arange(1000))
    np.testing.assert_array_equal(np.sort(second), np.arange(1000))


def test_shifted_batches_repeat_and_match_a_sequential_computation(mnist):
    """The parallel ``map`` gives exactly what one thread computing batch after batch gives."""
    x, y = mnist.x_train[:640], mnist.y_train[:640]
    batches = list(make_dataset(x, y, 64, seed=5, shift=2, epoch=3))
    again = list(make_dataset(x, y, 64, seed=5, shift=2, epoch=3))
    order = np.random.default_rng([5, 3]).permutation(640)  # numpy's own generator, by hand
    for i, ((xb, yb), (xa, ya)) in enumerate(zip(batches, again)):
        np.testing.assert_array_equal(xb.numpy(), xa.numpy())
        idx = order[i * 64:(i + 1) * 64]
        np.testing.assert_array_equal(yb.numpy(), y[idx])
        images = tf.constant(x[idx].astype(np.float32)[..., None] / 255.0)
        expected = random_shift(images, 2, tf.constant([5, 3 * 2**20 + i], tf.int64))
        np.testing.assert_array_equal(xb.numpy(), expected.numpy())
    other_epoch = next(iter(make_dataset(x, y, 64, seed=5, shift=2, epoch=4)))[0].numpy()
    assert not np.array_equal(other_epoch, batches[0][0].numpy())


def test_random_shift_with_the_same_seed_gives_the_same_offsets(mnist):
    images = tf.constant(mnist.x_test[:32].astype(np.float32)[..., None] / 255.0)
    a, b = random_shift(images, 2, (1, 2)), random_shift(images, 2, (1, 2))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), random_shift(images, 2, (1, 3)).numpy())


def test_bfloat16_training_keeps_dropout_and_the_output_layer_in_float32(mnist):
    """In bfloat16 a mask would keep 79.7% instead of 80%; the head stays float32 instead."""
    model = ArticleCNN(Hyperparameters(keep_rate=0.8, seed=1))
    x = mnist.x_test[:1000].astype(np.float32) / 255
    s = model.stages(x, training=True, compute_dtype="bfloat16", dropout_seed=(1, 0))
    assert s["conv1"].dtype == tf.bfloat16 and s["pool2"].dtype == tf.bfloat16
    assert s["fc"].dtype == s["dropout"].dtype == s["logits"].dtype == tf.float32
    fc, dropped = s["fc"].numpy(), s["dropout"].numpy()
    active = fc > 0
    kept = dropped[active] != 0
    # 0.8 of about 10^5 active units: a binomial standard deviation of about 0.0013.
    assert active.sum() > 100_000
    assert abs(kept.mean() - 0.8) < 0.004, kept.mean()
    np.testing.assert_array_equal(dropped[active][kept], fc[active][kept] / np.float32(0.8))
    w_out = model.weights["out"].numpy().astype(np.float64)
    b_out = model.biases["out"].numpy().astype(np.float64)
    np.testing.assert_allclose(s["logits"].numpy(), dropped.astype(np.float64) @ w_out + b_out,
                               rtol=1e-5, atol=1e-5)


def test_setup_course_turns_tensorfloat32_off():
    tf.config.experimental.enable_tensor_float_32_execution(True)
    setup_course(0)
    assert tf.config.experimental.tensor_float_32_execution_enabled() is False


@pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="needs a GPU")
def test_float32_matmul_on_the_gpu_is_full_float32_after_setup_course():
    setup_course(0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((512, 512)), rng.standard_normal((512, 512))
    with tf.device("/GPU:0"):
        product = tf.matmul(tf.constant(a, tf.float32), tf.constant(b, tf.float32)).numpy()
    exact = a @ b
    # float32 accumulates to about 1e-6 relative; TensorFloat-32 would be about 1e-3.
    assert np.max(np.abs(product - exact)) / np.max(np.abs(exact)) < 1e-5
