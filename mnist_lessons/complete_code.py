"""The whole network and its training on one screen, twice: low-level TF2 and Keras 3.

The book's "complete code" page prints these functions and runs them. The low-level version
keeps the article's shape (its weight and bias dictionaries, ``conv2d`` and ``maxpool2d``
helpers, one function for the network and one for training) with today's API; the Keras
version trains :func:`mnist_lessons.model.build_keras_model`. The tests check that, given the
same weights, both compute the same logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def convolutional_neural_network(x, weights: dict, biases: dict, keep_rate: float = 0.8,
                                 training: bool = False):
    """The article's network, TF2 edition: logits (N, 10) for images (N, 784) in [0, 1]."""
    import tensorflow as tf

    from .model import conv2d, maxpool2d

    x = tf.reshape(x, shape=[-1, 28, 28, 1])
    conv1 = tf.nn.relu(conv2d(x, weights["W_conv1"]) + biases["b_conv1"])
    conv1 = maxpool2d(conv1)
    conv2 = tf.nn.relu(conv2d(conv1, weights["W_conv2"]) + biases["b_conv2"])
    conv2 = maxpool2d(conv2)
    fc = tf.reshape(conv2, [-1, 7 * 7 * 64])
    fc = tf.nn.relu(tf.matmul(fc, weights["W_fc"]) + biases["b_fc"])
    if training:  # the fix: dropout only while training, with TF2's rate = 1 - keep_rate
        fc = tf.nn.dropout(fc, rate=1 - keep_rate)
    return tf.matmul(fc, weights["out"]) + biases["out"]


def train_neural_network(data, epochs: int = 1, batch_size: int = 128, seed: int = 0,
                         max_steps: int | None = None) -> tuple[dict, dict, float]:
    """The article's training function, TF2 edition: Adam, every batch of every epoch.

    Returns the trained ``(weights, biases)`` and the test accuracy.
    """
    import keras
    import tensorflow as tf

    from .data import make_dataset
    from .model import init_params

    keras.utils.set_random_seed(seed)
    weights, biases = init_params("glorot", seed)  # the fix: Glorot weights, zero biases
    variables = list(weights.values()) + list(biases.values())
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            prediction = convolutional_neural_network(x, weights, biases, training=True)
            cost = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=prediction))
        optimizer.apply_gradients(zip(tape.gradient(cost, variables), variables))
        return cost

    steps = 0
    for epoch in range(epochs):
        epoch_loss = 0.0
        for epoch_x, epoch_y in make_dataset(data.x_train, data.y_train, batch_size, seed=seed, flatten=True):
            epoch_loss += float(train_step(epoch_x, epoch_y))
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        print("Epoch", epoch + 1, "completed out of", epochs, "loss:", round(epoch_loss, 2))
        if max_steps is not None and steps >= max_steps:
            break
    x_test = data.x_test.reshape(-1, 784).astype(np.float32) / 255.0
    correct = tf.equal(tf.argmax(convolutional_neural_network(x_test, weights, biases), 1),
                       tf.cast(data.y_test, tf.int64))
    accuracy = float(tf.reduce_mean(tf.cast(correct, tf.float32)))
    print("Accuracy:", accuracy)
    return weights, biases, accuracy


def train_keras_network(data, epochs: int = 1, batch_size: int = 128, seed: int = 0,
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
