"""Bad input gets a clear error that says what to do, never silence or a trace from deep inside."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_lessons.data import ShuffledBatches, make_dataset
from mnist_lessons.evaluate import predict_logits
from mnist_lessons.model import ArticleCNN, Hyperparameters
from mnist_lessons.numpy_ops import conv2d_numpy, pool2d_numpy
from mnist_lessons.train import train


@pytest.mark.parametrize("changes, message", [
    ({"seed": -3}, "seed must be an integer >= 0, got -3"),
    ({"seed": 1.5}, "seed must be an integer >= 0"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"epochs": True}, "epochs must be a positive integer, got True"),
    ({"learning_rate": "0.001"}, "learning_rate must be a number, got '0.001'"),
    ({"learning_rate": float("nan")}, "learning_rate must be a number"),
    ({"keep_rate": 0}, r"keep_rate is the share of units kept, in \(0, 1\]"),
    ({"precision": "float16"}, "unknown precision 'float16'"),
])
def test_impossible_hyperparameters_are_refused_with_the_rule(changes, message):
    with pytest.raises(ValueError, match=message):
        Hyperparameters(**changes)


def test_hyperparameters_normalise_numbers_written_differently():
    hp = Hyperparameters(batch_size=np.int64(64), learning_rate=1, seed=np.uint8(2))
    assert hp == Hyperparameters(batch_size=64, learning_rate=1.0, seed=2)
    assert type(hp.batch_size) is int and type(hp.learning_rate) is float


@pytest.fixture(scope="module")
def model():
    return ArticleCNN(Hyperparameters(seed=0))


@pytest.mark.parametrize("kwargs, message", [
    ({"max_steps": -1}, "max_steps must be a positive integer or None, got -1"),
    ({"max_steps": 0}, "max_steps must be a positive integer or None, got 0"),
    ({"eval_every": 0}, "eval_every must be a positive integer or None"),
    ({"target_accuracy": 0.99, "evaluate": False}, "target_accuracy and eval_every need evaluations"),
    ({"target_accuracy": 99}, r"target_accuracy is a share in \(0, 1\]"),
])
def test_train_refuses_settings_that_would_train_nothing_or_silently_differ(model, mnist, kwargs,
                                                                             message):
    with pytest.raises(ValueError, match=message):
        train(model, mnist, verbose=False, **kwargs)


def test_train_refuses_hyperparameters_that_disagree_with_the_model(model, mnist):
    with pytest.raises(ValueError, match=r"hp.keep_rate=0.5 but the model was built with "
                                         r"keep_rate=0.8.*ArticleCNN\(hp\)"):
        train(model, mnist, Hyperparameters(keep_rate=0.5), verbose=False)
    with pytest.raises(TypeError, match="MNIST from load_mnist"):
        train(model, (mnist.x_train, mnist.y_train), verbose=False)


def test_predict_logits_refuses_a_batch_size_of_zero(model, mnist):
    with pytest.raises(ValueError, match="batch_size must be a positive integer .* got 0"):
        predict_logits(model, mnist.x_test[:10], batch_size=0)


def test_empty_or_badly_seeded_batches_are_refused():
    with pytest.raises(ValueError, match="ShuffledBatches got no items"):
        ShuffledBatches([], [])
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        ShuffledBatches(np.zeros((4, 28, 28), np.uint8), np.zeros(4), seed=-1)


def test_make_dataset_refuses_bad_counts(mnist):
    x, y = mnist.x_test[:8], mnist.y_test[:8]
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        make_dataset(x, y, 0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -2"):
        make_dataset(x, y, 4, seed=-2)
    with pytest.raises(ValueError, match="make_dataset got no images"):
        make_dataset(x[:0], y[:0])


def test_pooling_window_larger_than_the_image_is_refused():
    x = np.ones((1, 3, 3, 1))
    with pytest.raises(ValueError, match="a 4x4 window does not fit in a 3x3 image with VALID"):
        pool2d_numpy(x, window=4, stride=1, padding="VALID")
    with pytest.raises(ValueError, match="window must be a positive integer"):
        pool2d_numpy(x, window=0)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        conv2d_numpy(x, np.ones((2, 2, 1, 1)), stride=-1)
