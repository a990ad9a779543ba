"""The whole network and its training on one screen, twice: low-level TF2 and Keras 3.

The book's "complete code" page holds the same low-level program as cells the reader runs, each
next to the lines of the article it replaces; ``tests/test_complete_code_page.py`` checks that
the page's cells and these functions compute the same logits and train the same way. This
module keeps the article's shape (its weight and bias dictionaries, ``conv2d`` and
``maxpool2d`` helpers, one function for the network and one for training) with today's API; the
Keras version trains :func:`mnist_lessons.model.build_keras_model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_CLASSES = 10
BATCH_SIZE = 128
KEEP_RATE = 0.8  # the share of the FC layer's units dropout keeps, while training only


def conv2d(x, W):
    """The article's convolution: stride 1, ``SAME`` padding (28 x 28 stays 28 x 28)."""
    import tensorflow as tf

    return tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding="SAME")


def maxpool2d(x):
    """The article's pooling: 2 x 2 windows moved by 2 (28 -> 14 -> 7)."""
    import tensorflow as tf

    return tf.nn.max_pool2d(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")


def new_weights_and_biases(seed: int = 0) -> tuple[dict, dict]:
    """The article's two dictionaries of ``tf.Variable``s, created once: Glorot-uniform
    weights and zero biases instead of the article's N(0, 1) for both (chapter 4).

    Keys and shapes as in the article: ``W_conv1`` (5, 5, 1, 32), ``W_conv2`` (5, 5, 32, 64),
    ``W_fc`` (3136, 1024), ``out`` (1024, 10); biases ``b_conv1`` (32,), ``b_conv2`` (64,),
    ``b_fc`` (1024,), ``out`` (10,). The same seed gives the same values.
    """
    import keras
    import tensorflow as tf

    glorot = keras.initializers.GlorotUniform(seed=keras.random.SeedGenerator(seed))
    weights = {"W_conv1": tf.Variable(glorot([5, 5, 1, 32])),
               "W_conv2": tf.Variable(glorot([5, 5, 32, 64])),
               "W_fc": tf.Variable(glorot([7 * 7 * 64, 1024])),
               "out": tf.Variable(glorot([1024, N_CLASSES]))}
    biases = {"b_conv1": tf.Variable(tf.zeros([32])),
              "b_conv2": tf.Variable(tf.zeros([64])),
              "b_fc": tf.Variable(tf.zeros([1024])),
              "out": tf.Variable(tf.zeros([N_CLASSES]))}
    return weights, biases


def convolutional_neural_network(x, weights: dict, biases: dict, training: bool = False):
    """The article's network, TF2 edition: logits (N, 10) for images (N, 784) in [0, 1].

    ``training=True`` applies dropout (keep ``KEEP_RATE`` of the FC units); by default it is
    off, as it should be when testing.
    """
    import tensorflow as tf

    x = tf.reshape(x, shape=[-1, 28, 28, 1])
    conv1 = tf.nn.relu(conv2d(x, weights["W_conv1"]) + biases["b_conv1"])
    conv1 = maxpool2d(conv1)
    conv2 = tf.nn.relu(conv2d(conv1, weights["W_conv2"]) + biases["b_conv2"])
    conv2 = maxpool2d(conv2)
    fc = tf.reshape(conv2, [-1, 7 * 7 * 64])
    fc = tf.nn.relu(tf.matmul(fc, weights["W_fc"]) + biases["b_fc"])
    if training:
        fc = tf.nn.dropout(fc, rate=1 - KEEP_RATE)
    output = tf.matmul(fc, weights["out"]) + biases["out"]
    return output


def train_neural_network(data, hm_epochs: int = 10, seed: int = 0,
                         max_steps: int | None = None) -> tuple[dict, dict, float]:
    """The article's training function, TF2 edition: Adam, every image of every epoch.

    Args:
        data: :func:`mnist_lessons.data.load_mnist`'s result (``x_train``, ``y_train``,
            ``x_test``, ``y_test``: uint8 images, integer labels).
        hm_epochs: passes over the training images (the article's 10).
        seed: the initial weights, the order of the batches and dropout follow from it.
        max_steps: stop after this many batches in all (the book's quick test runs).

    Returns:
        The trained ``(weights, biases)`` and the test accuracy (a fraction).
    """
    import keras
    import tensorflow as tf

    from .data import make_dataset

    keras.utils.set_random_seed(seed)
    weights, biases = new_weights_and_biases(seed)
    variables = [*weights.values(), *biases.values()]
    optimizer = keras.optimizers.Adam(learning_rate=0.001)

    @tf.function
    def train_step(epoch_x, epoch_y):
        with tf.GradientTape() as tape:
            prediction = convolutional_neural_network(epoch_x, weights, biases, training=True)
            cost = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=epoch_y, logits=prediction))
        optimizer.apply_gradients(zip(tape.gradient(cost, variables), variables))
        return cost

    steps = 0
    for epoch in range(hm_epochs):
        epoch_loss = 0.0
        for epoch_x, epoch_y in make_dataset(data.x_train, data.y_train, BATCH_SIZE, seed=seed,
                                             flatten=True, epoch=epoch):
            epoch_loss += float(train_step(epoch_x, epoch_y))
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        print("Epoch", epoch + 1, "completed out of", hm_epochs, "loss:", round(epoch_loss, 2))
        if max_steps is not None and steps >= max_steps:
            break
    x_test = data.x_test.reshape(-1, 784).astype(np.float32) / 255.0
    prediction = convolutional_neural_network(x_test, weights, biases)
    correct = tf.equal(tf.argmax(prediction, 1), tf.cast(data.y_test, tf.int64))
    accuracy = float(tf.reduce_mean(tf.cast(correct, tf.float32)))
    print("Accuracy:", accuracy)
    return weights, biases, accuracy


def train_keras_network(data, epochs: int = 1, batch_size: int = BATCH_SIZE, seed: int = 0,
                        max_steps: int | None = None) -> tuple[Any, float]:
    """Compile and fit the Keras network; returns the model and its test accuracy."""
    import keras

    from .data import make_dataset
    from .model import Hyperparameters, build_keras_model

    model = build_keras_model(Hyperparameters(seed=seed))  # the same network, in Keras
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    train = make_dataset(data.x_train, data.y_train, batch_size, seed=seed)
    if max_steps is not None:
        train = train.take(max_steps)
    model.fit(train, epochs=epochs, verbose=2)
    test = make_dataset(data.x_test, data.y_test, 1000, shuffle=False)
    _, accuracy = model.evaluate(test, verbose=0)
    print("Accuracy:", accuracy)
    return model, float(accuracy)
