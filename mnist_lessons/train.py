"""Training the article's network: a ``tf.GradientTape`` loop compiled with ``tf.function``.

:func:`train` is the whole of the article's step 10 in today's TensorFlow: shuffled batches from
``tf.data``, the mean softmax cross-entropy, Adam, a progress line per epoch, and the test
accuracy after each epoch. It runs unchanged on a CPU or a GPU.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import MNIST, make_dataset
from .evaluate import accuracy_on_test_set
from .model import ArticleCNN, Hyperparameters
from .runtime import resolve_precision, set_seed

OPTIMIZERS = ("adam", "sgd")


@dataclass
class EpochRecord:
    """What one epoch did.

    Attributes:
        epoch: 1-based epoch number.
        steps: training steps run in this epoch.
        loss: mean cross-entropy over the epoch's batches (nats per image).
        loss_sum: the article's ``epoch_loss``: the sum of the batch losses.
        train_accuracy: share of training images classified right while training (dropout on).
        test_accuracy: share of the 10,000 test images right after the epoch (None if skipped).
        seconds: training time of the epoch, evaluation excluded.
        images_per_second: training throughput.
    """

    epoch: int
    steps: int
    loss: float
    loss_sum: float
    train_accuracy: float
    test_accuracy: float | None
    seconds: float
    images_per_second: float


@dataclass
class History:
    """Everything a training run measured, for the curves and the prose.

    Attributes:
        epochs: one :class:`EpochRecord` per epoch.
        step_losses: the loss of every training step, in order.
        evaluations: ``(step, training seconds so far, test accuracy)`` at each evaluation.
        target_reached: ``(step, training seconds)`` when ``target_accuracy`` was first met.
    """

    epochs: list[EpochRecord] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)
    target_reached: tuple[int, float] | None = None

    @property
    def final_test_accuracy(self) -> float | None:
        """The last measured test accuracy."""
        return self.evaluations[-1][2] if self.evaluations else None

    @property
    def training_seconds(self) -> float:
        """Total training time, evaluations excluded."""
        return float(sum(e.seconds for e in self.epochs))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays, for saving next to cached weights."""
        cols = {f"epoch_{k}": np.array([getattr(e, k) if getattr(e, k) is not None else np.nan
                                        for e in self.epochs], dtype=float)
                for k in EpochRecord.__dataclass_fields__}
        cols["step_losses"] = np.asarray(self.step_losses, dtype=float)
        cols["evaluations"] = np.asarray(self.evaluations, dtype=float).reshape(-1, 3)
        cols["target_reached"] = np.asarray(self.target_reached or (np.nan, np.nan), dtype=float)
        return cols

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "History":
        """Inverse of :meth:`to_arrays`."""
        names = list(EpochRecord.__dataclass_fields__)
        epochs = []
        for i in range(len(arrays["epoch_epoch"])):
            row = {k: float(arrays[f"epoch_{k}"][i]) for k in names}
            row["epoch"], row["steps"] = int(row["epoch"]), int(row["steps"])
            row["test_accuracy"] = None if np.isnan(row["test_accuracy"]) else row["test_accuracy"]
            epochs.append(EpochRecord(**row))
        reached = arrays["target_reached"]
        return cls(
            epochs=epochs,
            step_losses=arrays["step_losses"].tolist(),
            evaluations=[(int(s), float(t), float(a)) for s, t, a in arrays["evaluations"]],
            target_reached=None if np.isnan(reached[0]) else (int(reached[0]), float(reached[1])),
        )


def make_optimizer(name: str, hp: Hyperparameters, total_steps: int):
    """Adam (the article's choice) or plain SGD, with the learning-rate schedule of ``hp``.

    With ``hp.lr_decay < 1`` the rate follows a cosine from ``learning_rate`` down to
    ``learning_rate * lr_decay`` over ``total_steps``; with 1.0 it stays constant.
    """
    import keras

    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: use one of {OPTIMIZERS}")
    lr: Any = hp.learning_rate
    if hp.lr_decay < 1.0:
        lr = keras.optimizers.schedules.CosineDecay(hp.learning_rate, max(1, total_steps),
                                                    alpha=hp.lr_decay)
    return keras.optimizers.Adam(lr) if name == "adam" else keras.optimizers.SGD(lr)


def learning_rates(hp: Hyperparameters, n_train: int = 60_000) -> tuple[np.ndarray, np.ndarray]:
    """The learning rate at every step of a full run with ``hp``: ``(steps, rates)``."""
    total = hp.epochs * -(-n_train // hp.batch_size)
    lr = make_optimizer("adam", hp, total)._learning_rate
    steps = np.arange(total + 1)
    rates = np.array([float(lr(s)) for s in steps]) if callable(lr) else np.full(len(steps), float(lr))
    return steps, rates


def cross_entropy(labels, logits):
    """Mean softmax cross-entropy of integer labels (N,) against logits (N, 10)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))


def make_train_step(model: ArticleCNN, optimizer, compute_dtype: str = "float32",
                    jit_compile: bool = False):
    """One compiled training step: forward with dropout, loss, gradients, optimizer update.

    Returns a ``tf.function`` taking ``(images, labels, step)`` (float32 (batch, 28, 28, 1),
    int32 (batch,), and the step number, an int64 scalar) and returning ``(mean loss, number of
    correct predictions)``. The dropout mask is a stateless random function of ``(model seed,
    step)``, so a run repeats mask for mask. ``jit_compile`` asks XLA to fuse the step
    (measured slower on CPU here; see the benchmark).
    """
    import tensorflow as tf

    variables = model.variables
    seed = tf.constant(model.hp.seed, tf.int64)

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def train_step(images, labels, step):
        with tf.GradientTape() as tape:
            logits = model.stages(images, training=True, compute_dtype=compute_dtype,
                                  dropout_seed=tf.stack([seed, tf.cast(step, tf.int64)]))["logits"]
            loss = cross_entropy(labels, logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        predicted = tf.argmax(logits, 1, output_type=tf.int32)
        return loss, tf.reduce_sum(tf.cast(predicted == labels, tf.int32))

    return train_step


class Progress:
    """Training progress: one line per epoch, the current one updated as steps finish.

    In a notebook (Jupyter, Colab) the lines live in one output area that is updated in place,
    so a saved or rendered notebook keeps only the finished lines. In a terminal the current line
    is redrawn with a carriage return; elsewhere (logs, CI) only finished lines are printed.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.lines: list[str] = []
        self.handle = None
        self.tty = enabled and sys.stdout.isatty()
        if enabled and not self.tty:
            try:
                from IPython import get_ipython
                from IPython.display import display

                if get_ipython() is not None and hasattr(get_ipython(), "kernel"):
                    self.handle = display({"text/plain": ""}, raw=True, display_id=True)
            except ImportError:  # pragma: no cover - IPython is always there with Jupyter
                pass

    @staticmethod
    def line(epoch: int, epochs: int, step: int, steps: int, loss: float, rate: float,
             extra: str = "") -> str:
        """``epoch 2/10 [=====.....] 120/469 steps  loss 0.0412  5,400 images/s``."""
        width = 20
        done = int(width * step / max(1, steps))
        return (f"epoch {epoch}/{epochs} [{'=' * done}{'.' * (width - done)}] {step}/{steps} "
                f"steps  loss {loss:.4f}  {rate:,.0f} images/s{extra}")

    def _show(self, current: str | None) -> None:
        text = "\n".join(self.lines + ([current] if current else []))
        self.handle.update({"text/plain": text}, raw=True)

    def update(self, line: str) -> None:
        """Show the current, unfinished epoch's line."""
        if self.handle is not None:
            self._show(line)
        elif self.tty:
            print("\r" + line, end="", flush=True)

    def finish(self, line: str) -> None:
        """Replace the current line by its final version and keep it."""
        if not self.enabled:
            return
        self.lines.append(line)
        if self.handle is not None:
            self._show(None)
        else:
            print(("\r" if self.tty else "") + line, flush=True)


def train(model: ArticleCNN, data: MNIST, hp: Hyperparameters | None = None, *,
          optimizer: str = "adam", max_steps: int | None = None,
          target_accuracy: float | None = None, eval_every: int | None = None,
          evaluate: bool = True, verbose: bool = True) -> History:
    """Train ``model`` on MNIST's 60,000 training images and return its :class:`History`.

    Args:
        model: the network to train (its variables are updated in place).
        data: from :func:`mnist_lessons.data.load_mnist`.
        hp: batch size, epochs, learning rate, seed; defaults to the model's own.
        optimizer: ``"adam"`` (the article's) or ``"sgd"``.
        max_steps: stop after this many steps in all (the CI profile uses it).
        target_accuracy: stop as soon as the test accuracy reaches it (e.g. 0.99).
        eval_every: also measure the test accuracy every this many steps (else once per epoch).
        evaluate: measure the test accuracy at all (the benchmark turns it off).
        verbose: print a progress line per epoch.
    """
    import tensorflow as tf

    if not isinstance(model, ArticleCNN):
        raise TypeError(f"train() expects an ArticleCNN, got {type(model).__name__}")
    if not isinstance(data, MNIST):
        raise TypeError(f"train() expects MNIST from load_mnist(), got {type(data).__name__}")
    hp = hp or model.hp
    if not isinstance(hp, Hyperparameters):
        raise TypeError(f"hp must be a Hyperparameters, got {type(hp).__name__}")
    for name in ("keep_rate", "n_classes", "seed"):
        if getattr(hp, name) != getattr(model.hp, name):
            raise ValueError(
                f"hp.{name}={getattr(hp, name)!r} but the model was built with {name}="
                f"{getattr(model.hp, name)!r}, and the model's own setting is the one that would "
                f"apply. Build the model with these settings, ArticleCNN(hp), or leave hp out.")
    for name, value in (("max_steps", max_steps), ("eval_every", eval_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy is a share in (0, 1], got {target_accuracy}")
    if not evaluate and (target_accuracy is not None or eval_every is not None):
        raise ValueError("target_accuracy and eval_every need evaluations: leave evaluate=True, "
                         "or drop them")
    if len(data.x_train) == 0:
        raise ValueError("data holds no training images")
    set_seed(hp.seed)
    compute_dtype = resolve_precision(hp.precision)
    steps_per_epoch = -(-len(data.x_train) // hp.batch_size)
    total = hp.epochs * steps_per_epoch if max_steps is None else min(max_steps, hp.epochs * steps_per_epoch)
    opt = make_optimizer(optimizer, hp, total)
    train_step = make_train_step(model, opt, compute_dtype)

    history = History()

    def evaluate_now(step: int, seconds: float) -> float:
        acc = accuracy_on_test_set(model, data)
        history.evaluations.append((step, seconds, acc))
        if target_accuracy is not None and acc >= target_accuracy and not history.target_reached:
            history.target_reached = (step, seconds)
        return acc

    step, clock = 0, 0.0  # clock: seconds of training so far, evaluations excluded
    progress = Progress(verbose)
    n_epochs = -(-total // steps_per_epoch)  # fewer than hp.epochs when max_steps cuts training
    for epoch in range(1, n_epochs + 1):
        if step >= total or history.target_reached:
            break
        epoch_steps = min(steps_per_epoch, total - step)
        losses, correct, images, epoch_seconds, acc = [], 0, 0, 0.0, None
        # Each epoch's order and shifts are a function of (seed, epoch): a run repeats exactly.
        dataset = make_dataset(data.x_train, data.y_train, hp.batch_size, seed=hp.seed,
                               shift=hp.shift, epoch=epoch - 1)
        started = time.perf_counter()
        for batch_images, batch_labels in dataset:
            loss, right = train_step(batch_images, batch_labels, tf.constant(step, tf.int64))
            losses.append(loss)
            correct += right
            images += int(batch_labels.shape[0])
            step += 1
            if verbose and len(losses) % 25 == 0:
                rate = images / (epoch_seconds + time.perf_counter() - started)
                progress.update(Progress.line(epoch, n_epochs, len(losses), epoch_steps,
                                              float(loss), rate))
            if evaluate and eval_every and step % eval_every == 0:
                float(loss)  # wait for the step to finish before reading the clock
                epoch_seconds += time.perf_counter() - started
                acc = evaluate_now(step, clock + epoch_seconds)
                started = time.perf_counter()
            if step >= total or history.target_reached:
                break
        float(losses[-1])
        epoch_seconds += time.perf_counter() - started
        clock += epoch_seconds
        if evaluate and not (history.evaluations and history.evaluations[-1][0] == step):
            acc = evaluate_now(step, clock)
        step_losses = [float(v) for v in losses]
        history.step_losses += step_losses
        record = EpochRecord(epoch=epoch, steps=len(losses), loss=float(np.mean(step_losses)),
                             loss_sum=float(np.sum(step_losses)),
                             train_accuracy=int(correct) / images, test_accuracy=acc,
                             seconds=epoch_seconds, images_per_second=images / epoch_seconds)
        history.epochs.append(record)
        extra = f"  train acc {record.train_accuracy:.2%}"
        extra += f"  test acc {acc:.2%}" if acc is not None else ""
        progress.finish(Progress.line(epoch, n_epochs, len(losses), epoch_steps, record.loss,
                                      record.images_per_second, extra + f"  {epoch_seconds:.1f} s"))
    if history.target_reached:
        progress.finish(f"reached {target_accuracy:.1%} test accuracy after "
                        f"{history.target_reached[0]} steps, {history.target_reached[1]:.1f} s of training")
    return history
