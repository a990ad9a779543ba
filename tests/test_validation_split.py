"""The validation split: 5,000 training images watch training; the test set is measured once."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_lessons import train as train_module
from mnist_lessons.data import (
    MNIST,
    N_VALIDATION,
    validation_split,
    with_fewer_training_images,
)
from mnist_lessons.model import ArticleCNN, Hyperparameters
from mnist_lessons.train import History, train

# MNIST's published class counts of the 60,000 training images (LeCun's training-set files, as
# every copy of the set reports them): digit 0 has 5,923 images, ..., digit 9 has 5,949.
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_the_first_5000_training_images_are_held_out_as_in_tf1s_loader(mnist):
    split = validation_split(mnist)
    assert N_VALIDATION == 5000
    # TF1's read_data_sets: validation = train[:5000], train = train[5000:].
    assert split.x_val.shape == (5000, 28, 28) and split.y_val.shape == (5000,)
    assert split.x_train.shape == (55000, 28, 28) and split.y_train.shape == (55000,)
    assert split.x_val.tobytes() == mnist.x_train[:5000].tobytes()
    assert split.x_train.tobytes() == mnist.x_train[5000:].tobytes()
    assert split.y_val.tobytes() == mnist.y_train[:5000].tobytes()
    # Every image is in exactly one half; the test set is not in either.
    assert not hasattr(split, "x_test")


def test_both_halves_together_hold_mnists_published_class_counts(mnist):
    split = validation_split(mnist)
    counts = np.bincount(split.y_val, minlength=10) + np.bincount(split.y_train, minlength=10)
    assert counts.tolist() == TRAIN_CLASS_COUNTS
    # Every digit is well represented among the 5,000 (about 500 each, none under 400).
    assert np.bincount(split.y_val, minlength=10).min() > 400


def test_the_split_is_the_same_every_time_no_randomness(mnist):
    a, b = validation_split(mnist), validation_split(mnist)
    assert np.array_equal(a.y_val, b.y_val) and np.array_equal(a.x_train, b.x_train)


@pytest.mark.parametrize("bad", [0, -5, 60_000, 1.5, True])
def test_validation_split_refuses_impossible_sizes(mnist, bad):
    with pytest.raises(ValueError, match="n_validation is a number of training images to hold out"):
        validation_split(mnist, bad)


def test_validation_split_refuses_bare_arrays(mnist):
    with pytest.raises(TypeError, match="never from the test set"):
        validation_split((mnist.x_test, mnist.y_test))


def test_train_refuses_the_test_set_as_monitoring_data(mnist):
    with pytest.raises(TypeError, match="cannot be passed in for monitoring"):
        train(ArticleCNN(), mnist, n_validation=(mnist.x_test, mnist.y_test), verbose=False)


def test_fewer_training_images_keep_the_same_validation_and_test_sets(mnist):
    small = with_fewer_training_images(mnist, 2000)
    assert isinstance(small, MNIST) and len(small.x_train) == 7000
    split = validation_split(small)
    assert split.x_val.tobytes() == mnist.x_train[:5000].tobytes()
    assert len(split.x_train) == 2000 and small.x_test is mnist.x_test
    with pytest.raises(ValueError, match="n_train is a number of training images from 1 to 55000"):
        with_fewer_training_images(mnist, 55_001)


@pytest.mark.slow
def test_training_never_sees_the_validation_images_and_measures_the_test_set_once(mnist_1000_test,
                                                                                 monkeypatch):
    mnist = mnist_1000_test  # the first 1,000 test images: which images, not how many, matters
    trained_on, watched, tested = [], [], []
    real_dataset, real_accuracy_on, real_test = (train_module.make_dataset, train_module.accuracy_on,
                                                 train_module.accuracy_on_test_set)

    def spy_dataset(x, y, *args, **kwargs):
        trained_on.append(x)
        return real_dataset(x, y, *args, **kwargs)

    def spy_accuracy_on(model, images, labels):
        watched.append(images)
        return real_accuracy_on(model, images, labels)

    def spy_test(model, data):
        tested.append(len(watched))  # how many monitoring measurements came before
        return real_test(model, data)

    monkeypatch.setattr(train_module, "make_dataset", spy_dataset)
    monkeypatch.setattr(train_module, "accuracy_on", spy_accuracy_on)
    monkeypatch.setattr(train_module, "accuracy_on_test_set", spy_test)
    h = train(ArticleCNN(Hyperparameters(seed=0)), mnist, max_steps=20, eval_every=10,
              track_training=True, verbose=False)
    # Trained on the 55,000 images after the first 5,000 only.
    assert len(trained_on) == 1 and trained_on[0].tobytes() == mnist.x_train[5000:].tobytes()
    # Watched on the held-out 5,000 (and, asked for, on 5,000 training images), never the test set.
    assert [s for s, _, _ in h.evaluations] == [10, 20]
    validation_calls = [im for im in watched if im.tobytes() == mnist.x_train[:5000].tobytes()]
    training_calls = [im for im in watched if im.tobytes() == mnist.x_train[5000:10000].tobytes()]
    assert len(validation_calls) == 2 and len(training_calls) == 2 and len(watched) == 4
    assert not any(len(im) == len(mnist.x_test) and im.tobytes() == mnist.x_test.tobytes()
                   for im in watched)
    # The test set: once, after the last monitoring measurement (step 20, the end of training).
    assert tested == [4]
    assert h.test_accuracy == h.final_test_accuracy and 0.5 < h.test_accuracy <= 1
    assert h.final_validation_accuracy == h.evaluations[-1][2]
    assert [s for s, _ in h.training_evaluations] == [10, 20]
    back = History.from_arrays(h.to_arrays())
    assert back.test_accuracy == h.test_accuracy
    assert back.training_evaluations == h.training_evaluations


@pytest.mark.slow
def test_the_validation_accuracy_is_the_share_right_on_the_first_5000_training_images(mnist_1000_test):
    mnist = mnist_1000_test
    model = ArticleCNN(Hyperparameters(seed=0))
    h = train(model, mnist, max_steps=15, verbose=False)
    # Independent count: logits from the Keras-free forward pass, argmax, compare by hand.
    x = mnist.x_train[:5000].astype(np.float32)[..., None] / 255.0
    predicted = np.concatenate([model(x[i:i + 1000], training=False).numpy().argmax(1)
                                for i in range(0, 5000, 1000)])
    right = int((predicted == mnist.y_train[:5000]).sum())
    assert h.evaluations[-1][2] == pytest.approx(right / 5000)
    assert h.epochs[-1].validation_accuracy == pytest.approx(right / 5000)
