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

# The stages stage_outputs returns: those of ArticleCNN.stages with dropout off ("input" is the
# images themselves, "dropout" equals "fc" when dropout is off).
STAGES = ("reshaped", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flat", "fc", "logits")


def predict_logits(model: Any, images: Any, batch_size: int = 1000,
                   training: bool = False) -> np.ndarray:
    """Logits (N, 10) of ``model`` for images (uint8 0-255 or float 0-1), in batches.

    ``training=True`` keeps dropout on, which is what the article's accuracy line did.
    """
    return _in_batches(model, training, lambda x: model(x, training=training), images,
                       batch_size)


def _in_batches(model: Any, key: Any, forward: Any, images: Any, batch_size: int) -> np.ndarray:
    """``forward`` (images (n, ...) -> (n, ...)) over ``images`` in batches of ``batch_size``,
    compiled once per model and ``key`` (kept on the model), as one float32 array of N rows
    (none for no images, with the trailing shape a batch of one would have)."""
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (images per forward pass), "
                         f"got {batch_size!r}")
    images = check_images(images)
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
    cache = model.__dict__.setdefault("_forward_fns", {})
    if key not in cache:  # one compiled forward pass per model and kind
        cache[key] = tf.function(forward, reduce_retracing=True)
    out = [cache[key](tf.constant(images[i:i + batch_size])).numpy()
           for i in range(0, len(images), batch_size)]
    if not out:
        one = cache[key](tf.zeros((1,) + images.shape[1:], tf.float32)).numpy()
        return np.zeros((0,) + one.shape[1:], np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


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


def fc_activations(model: Any, images: Any, batch_size: int = 1000) -> np.ndarray:
    """The fully connected layer's outputs (N, 1024), after its ReLU and before dropout.

    Everything the network computes up to there (both convolutions, both poolings, the big
    dense layer) is the same on every call: dropout, right after, is its only random step.

    Args:
        model: an :class:`~mnist_lessons.model.ArticleCNN`.
        images: uint8 0-255 or float 0-1, (N, 28, 28), (N, 784) or (N, 28, 28, 1).
        batch_size: images per forward pass, a positive integer.
    """
    return stage_outputs(model, images, "fc", batch_size)


def stage_outputs(model: Any, images: Any, stage: str, batch_size: int = 1000) -> np.ndarray:
    """One stage of the network (a key of :meth:`~mnist_lessons.model.ArticleCNN.stages`) for
    many images, computed in batches, dropout off.

    ``stage_outputs(model, x, "relu1")`` gives the first layer's feature maps, (N, 28, 28, 32)
    in NHWC order; ``"flat"`` the (N, 3136) vectors the FC layer reads; ``"fc"`` its (N, 1024)
    outputs. Each batch runs the network only as far as that stage is needed, through one
    compiled function per model and stage.

    Args:
        model: an :class:`~mnist_lessons.model.ArticleCNN`.
        images: uint8 0-255 or float 0-1, (N, 28, 28), (N, 784) or (N, 28, 28, 1).
        stage: ``"reshaped"``, ``"conv1"``, ``"relu1"``, ``"pool1"``, ``"conv2"``, ``"relu2"``,
            ``"pool2"``, ``"flat"``, ``"fc"`` or ``"logits"``.
        batch_size: images per forward pass, a positive integer.
    """
    from .model import ArticleCNN

    if not isinstance(model, ArticleCNN):
        raise TypeError(f"stage_outputs needs an ArticleCNN (the package's network), got "
                        f"{type(model).__name__}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)} (the network's stages, in "
                         f"order), got {stage!r}")
    return _in_batches(model, ("stage", stage), lambda x: model.stages(x)[stage], images,
                       batch_size)


def accuracy_with_dropout(model: Any, images: Any, labels: Any, rate: float,
                          repeats: int = 3) -> list[float]:
    """Accuracy when dropout of ``rate`` stays on at test time, measured ``repeats`` times.

    This is what the article's evaluation did (with rate 0.2), and what a word-for-word TF2 port
    of ``tf.nn.dropout(fc, keep_rate)`` does with rate 0.8, because TF2's second argument is the
    rate *dropped*. Each repeat draws new dropout masks, so the results differ.

    Dropout is the network's only random step, so the layers before it run once
    (:func:`fc_activations`); each repeat then draws a new mask over those outputs, scales the
    units kept by ``1 / (1 - rate)`` and applies the output layer. That is the same measurement
    as running the whole network again with dropout on (other random masks, so other numbers,
    from the same distribution), for the cost of the last layer.
    """
    import tensorflow as tf

    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
            or not 0.0 <= rate < 1.0:
        raise ValueError(f"rate is the share of units dropped, in [0, 1), got {rate!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    labels = check_labels(labels)
    fc = tf.constant(fc_activations(model, images))
    if len(labels) != len(fc):
        raise ValueError(f"need as many labels as images, got {len(labels)} and {len(fc)}")
    w, b = model.weights["out"], model.biases["out"]

    def once() -> float:
        kept = tf.nn.dropout(fc, rate=float(rate)) if rate > 0 else fc
        return accuracy(tf.argmax(tf.matmul(kept, w) + b, 1).numpy(), labels)

    if rate == 0:  # no randomness left: every repeat is the same number
        return [once()] * int(repeats)
    return [once() for _ in range(int(repeats))]


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


# --- Beyond one number: calibration and where the network looks -------------------------------

def confidence_and_correct(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The confidence (N,) of each answer (its largest probability) and whether it was right (N,).

    ``probabilities`` (N, 10) are the softmax of the logits; ``labels`` (N,) the true digits.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    labels = check_labels(labels)
    if p.ndim != 2 or p.shape != (len(labels), N_CLASSES):
        raise ValueError(f"expected probabilities of shape ({len(labels)}, {N_CLASSES}), got {p.shape}")
    return p.max(axis=1), p.argmax(axis=1) == labels


@dataclass(frozen=True)
class ReliabilityTable:
    """Answers grouped by confidence: how sure the network was against how often it was right.

    Bin ``i`` holds the answers with confidence in ``(edges[i], edges[i + 1]]`` (the first
    bin includes 0). Empty bins have ``nan`` confidence and accuracy.

    Attributes:
        edges: bin edges (n_bins + 1,), from 0 to 1.
        counts: answers per bin (n_bins,).
        confidence: mean confidence per bin (n_bins,).
        accuracy: share of right answers per bin (n_bins,).
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def _check_confidence(confidence: Any, correct: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer (confidence bins), got {n_bins!r}")
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct)
    if c.ndim != 1 or ok.shape != c.shape or c.size == 0:
        raise ValueError(f"expected confidence and correct as two 1D arrays of the same length "
                         f"(> 0), got shapes {c.shape} and {ok.shape}")
    if ok.dtype != bool and not np.isin(ok, (0, 1)).all():
        raise ValueError("correct must be booleans (or 0/1): was each answer right?")
    if not np.all((c >= 0) & (c <= 1)):
        raise ValueError("confidence must be probabilities in [0, 1]: pass softmax(logits).max(axis=1)")
    return c, ok.astype(bool)


def reliability_table(confidence: Any, correct: Any, n_bins: int = 10) -> ReliabilityTable:
    """Group answers into ``n_bins`` equal-width confidence bins (the data of a reliability diagram).

    A calibrated network is right 90% of the time when it says 90%: in every bin, accuracy
    equals mean confidence.
    """
    c, ok = _check_confidence(confidence, correct, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, c, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=c, minlength=n_bins) / counts
        acc = np.bincount(which, weights=ok, minlength=n_bins) / counts
    return ReliabilityTable(edges, counts, mean_conf, acc)


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 10) -> float:
    """Expected calibration error: the gap |accuracy - confidence| of each bin, weighted by its
    share of the answers, summed, in [0, 1]. Near 0 for a calibrated network, but not 0 on a
    finite set: chance leaves gaps (on 10,000 answers about 0.1% for a network as confident as
    the course model, chapter 11). 0 does not prove calibration either: a bin can hide gaps
    inside it. Guo et al. (2017) use 15 bins."""
    table = reliability_table(confidence, correct, n_bins)
    share = table.counts / table.counts.sum()
    gaps = np.abs(table.accuracy - table.confidence)
    return float(np.sum(share[table.counts > 0] * gaps[table.counts > 0]))


def _check_targets(targets: Any, n: int) -> np.ndarray:
    return check_labels(np.full(n, targets) if np.ndim(targets) == 0 else targets, n)


def gradient_saliency(model: Any, images: Any, targets: Any) -> np.ndarray:
    """d logit[target] / d pixel for each image: (N, 28, 28) float32, by ``tf.GradientTape``.

    ``images`` (N, 28, 28) uint8 0-255 or float 0-1; ``targets`` one digit or (N,) digits
    (usually the prediction). A large value, of either sign, marks a pixel whose change would
    move that logit most: where the network "looks". Dropout is off.
    """
    import tensorflow as tf

    images = check_images(images)
    x = tf.constant(images.astype(np.float32) / 255.0 if images.dtype == np.uint8
                    else images.astype(np.float32))
    targets = _check_targets(targets, len(images)).astype(np.int64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        picked = tf.gather(logits, targets, axis=1, batch_dims=1)
    return tape.gradient(picked, x).numpy().reshape(-1, 28, 28)


def occlusion_map(model: Any, image: Any, target: int, patch: int = 6,
                  stride: int = 2) -> np.ndarray:
    """How much the probability of ``target`` drops when a ``patch`` x ``patch`` square of the
    image is blanked (set to 0), for each position of the square moved by ``stride``.

    ``image`` (28, 28) uint8 or float 0-1. Returns (28, 28) float: each pixel gets the mean
    drop over the squares that covered it (positive = hiding it hurts the answer). One batch
    of forward passes, dropout off.
    """
    for name, value in (("patch", patch), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 28:
            raise ValueError(f"{name} must be an integer from 1 to 28 pixels, got {value!r}")
    x = check_images(np.asarray(image)[None])[0]
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    target = int(_check_targets(target, 1)[0])
    starts = range(0, 28 - patch + 1, stride)
    corners = [(r, c) for r in starts for c in starts]
    batch = np.repeat(x[None], len(corners) + 1, axis=0)
    for k, (r, c) in enumerate(corners, start=1):
        batch[k, r:r + patch, c:c + patch] = 0.0
    p = softmax(predict_logits(model, batch))[:, target]
    drop, covered = np.zeros((28, 28)), np.zeros((28, 28))
    for k, (r, c) in enumerate(corners, start=1):
        drop[r:r + patch, c:c + patch] += p[0] - p[k]
        covered[r:r + patch, c:c + patch] += 1
    return np.divide(drop, covered, out=np.zeros((28, 28)), where=covered > 0)
