"""Measuring a trained network: accuracy, per class, the confusion matrix, and its mistakes.

The article's step 11 in today's TensorFlow: compare the predicted digit (the largest logit)
with the true one, with dropout switched off, over the whole test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import MNIST, N_CLASSES, check_images, check_labels
from .numpy_ops import softmax_stable as softmax  # noqa: F401  (probabilities from logits)


def predict_logits(model: Any, images: Any, batch_size: int = 1000,
                   training: bool = False) -> np.ndarray:
    """Logits (N, 10) of ``model`` for images (uint8 0-255 or float 0-1), in batches.

    ``training=True`` keeps dropout on, which is what the article's accuracy line did.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (images per forward pass), "
                         f"got {batch_size!r}")
    images = check_images(images)
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    cache = model.__dict__.setdefault("_forward_fns", {})
    if training not in cache:  # one compiled forward pass per model and mode
        cache[training] = tf.function(lambda x: model(x, training=training), reduce_retracing=True)
    forward = cache[training]
    out = [forward(tf.constant(images[i:i + batch_size])).numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), np.float32)


def accuracy(predicted: Any, labels: Any) -> float:
    """Share of predictions equal to the labels, in [0, 1]."""
    predicted, labels = check_labels(predicted), check_labels(labels)
    if len(predicted) != len(labels) or len(labels) == 0:
        raise ValueError(f"need as many predictions as labels (> 0), got {len(predicted)} "
                         f"and {len(labels)}")
    return float(np.mean(predicted == labels))


def accuracy_on_test_set(model: Any, data: MNIST, training: bool = False) -> float:
    """Share of the 10,000 test digits the model gets right (dropout off unless ``training``)."""
    return accuracy(predict_logits(model, data.x_test, training=training).argmax(axis=1),
                    data.y_test)


def accuracy_with_dropout(model: Any, images: Any, labels: Any, rate: float,
                          repeats: int = 3) -> list[float]:
    """Accuracy when dropout of ``rate`` stays on at test time, measured ``repeats`` times.

    This is what the article's evaluation did (with rate 0.2), and what a word-for-word TF2 port
    of ``tf.nn.dropout(fc, keep_rate)`` does with rate 0.8, because TF2's second argument is the
    rate *dropped*. Each call draws new dropout masks, so the results differ.
    """
    from .model import ArticleCNN

    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate is the share of units dropped, in [0, 1), got {rate}")
    twin = ArticleCNN(model.hp.replace(keep_rate=1.0 - rate))
    twin.set_weights(model.get_weights())
    labels = check_labels(labels)
    return [accuracy(predict_logits(twin, images, training=rate > 0).argmax(axis=1), labels)
            for _ in range(repeats)]


def confusion_matrix(labels: Any, predicted: Any, n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true digit, column = predicted digit."""
    labels, predicted = check_labels(labels), check_labels(predicted, len(labels))
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class_accuracy(labels: Any, predicted: Any) -> np.ndarray:
    """Accuracy of each digit (10,): the diagonal of the confusion matrix over its row sums."""
    m = confusion_matrix(labels, predicted)
    rows = m.sum(axis=1)
    return np.divide(np.diag(m), rows, out=np.full(len(rows), np.nan), where=rows > 0)


@dataclass(frozen=True)
class Mistakes:
    """The misclassified images, most confident mistakes first.

    Attributes:
        indices: positions in the evaluated set.
        true: the true digits.
        predicted: what the model said.
        confidence: the probability the model gave its (wrong) answer.
    """

    indices: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def misclassified(labels: Any, probabilities: Any) -> Mistakes:
    """Find the mistakes from true labels (N,) and predicted probabilities (N, 10)."""
    p = np.asarray(probabilities)
    labels = check_labels(labels)
    if p.ndim != 2 or p.shape != (len(labels), N_CLASSES):
        raise ValueError(f"expected probabilities of shape ({len(labels)}, {N_CLASSES}), got {p.shape}")
    predicted = p.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    conf = p[wrong, predicted[wrong]]
    order = np.argsort(-conf, kind="stable")
    return Mistakes(wrong[order], labels[wrong][order], predicted[wrong][order], conf[order])
