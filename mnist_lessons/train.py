"""Training the article's network: a ``tf.GradientTape`` loop compiled with ``tf.function``.

:func:`train` is the whole of the article's step 10 in today's TensorFlow: shuffled batches from
``tf.data``, the mean softmax cross-entropy, Adam, a progress line per epoch, and the accuracy on
5,000 held-out *validation* images after each epoch. The test set is measured once, at the end,
after every decision (when to stop, which setting) has been taken on the validation images. It
runs unchanged on a CPU or a GPU.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import MNIST, N_TRAIN, N_VALIDATION, make_dataset, validation_split
from .evaluate import accuracy, accuracy_on_test_set, predict_logits
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
        validation_accuracy: share of the validation images right after the epoch, dropout off
            (None if skipped).
        seconds: training time of the epoch, evaluation excluded.
        images_per_second: training throughput.
    """

    epoch: int
    steps: int
    loss: float
    loss_sum: float
    train_accuracy: float
    validation_accuracy: float | None
    seconds: float
    images_per_second: float


@dataclass
class History:
    """Everything a training run measured, for the curves and the prose.

    Attributes:
        epochs: one :class:`EpochRecord` per epoch.
        step_losses: the loss of every training step, in order.
        evaluations: ``(step, training seconds so far, validation accuracy)`` at each evaluation.
        training_evaluations: ``(step, accuracy on the first 5,000 training images, dropout
            off)`` at each evaluation, when asked for (``track_training``): the other half of
            the overfitting picture.
        target_reached: ``(step, training seconds)`` when ``target_accuracy`` was first met
            on the validation images.
        test_accuracy: the share of the 10,000 test images right, measured once, after
            training (None if not measured).
    """

    epochs: list[EpochRecord] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)
    training_evaluations: list[tuple[int, float]] = field(default_factory=list)
    target_reached: tuple[int, float] | None = None
    test_accuracy: float | None = None

    @property
    def final_validation_accuracy(self) -> float | None:
        """The last measured validation accuracy."""
        return self.evaluations[-1][2] if self.evaluations else None

    @property
    def final_test_accuracy(self) -> float | None:
        """The test accuracy, measured once after training (the name chapters use)."""
        return self.test_accuracy

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
        cols["training_evaluations"] = np.asarray(self.training_evaluations, dtype=float).reshape(-1, 2)
        cols["target_reached"] = np.asarray(self.target_reached or (np.nan, np.nan), dtype=float)
        cols["test_accuracy"] = np.asarray(np.nan if self.test_accuracy is None else self.test_accuracy,
                                           dtype=float)
        return cols

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "History":
        """Inverse of :meth:`to_arrays`."""
        names = list(EpochRecord.__dataclass_fields__)
        epochs = []
        for i in range(len(arrays["epoch_epoch"])):
            row = {k: float(arrays[f"epoch_{k}"][i]) for k in names}
            row["epoch"], row["steps"] = int(row["epoch"]), int(row["steps"])
            if np.isnan(row["validation_accuracy"]):
                row["validation_accuracy"] = None
            epochs.append(EpochRecord(**row))
        reached = arrays["target_reached"]
        test = float(arrays["test_accuracy"])
        return cls(
            epochs=epochs,
            step_losses=arrays["step_losses"].tolist(),
            evaluations=[(int(s), float(t), float(a)) for s, t, a in arrays["evaluations"]],
            training_evaluations=[(int(s), float(a)) for s, a in arrays["training_evaluations"]],
            target_reached=None if np.isnan(reached[0]) else (int(reached[0]), float(reached[1])),
            test_accuracy=None if np.isnan(test) else test,
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


def learning_rates(hp: Hyperparameters, n_train: int = N_TRAIN - N_VALIDATION
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The learning rate at every step of a full run with ``hp`` on ``n_train`` images (the
    55,000 left after the validation split): ``(steps, rates)``."""
    total = hp.epochs * -(-n_train // hp.batch_size)
    lr = make_optimizer("adam", hp, total)._learning_rate
    steps = np.arange(total + 1)
    # A Keras schedule takes a whole array of steps at once (one call, not one per step).
    rates = np.asarray(lr(steps), np.float64) if callable(lr) else np.full(len(steps), float(lr))
    return steps, rates


def cross_entropy(labels, logits):
    """Mean softmax cross-entropy of integer labels (N,) against logits (N, 10)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))


def can_fuse_adam(optimizer) -> bool:
    """True for a plain Keras ``Adam``: no AMSGrad, weight decay, clipping, averaging or
    gradient accumulation, which :func:`fused_adam_update` does not do."""
    import keras

    return (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
            and not optimizer.weight_decay and optimizer.clipnorm is None
            and optimizer.clipvalue is None and optimizer.global_clipnorm is None
            and not optimizer.use_ema and not optimizer.gradient_accumulation_steps
            and optimizer.loss_scale_factor is None)


def fused_adam_update(optimizer, gradients, variables) -> None:
    """Adam's update of every variable, one fused kernel per variable (``ResourceApplyAdam``).

    The same arithmetic as Keras's ``optimizer.apply_gradients`` (chapter 10): the moving
    averages ``m = b1 m + (1 - b1) g`` and ``v = b2 v + (1 - b2) g**2``, then
    ``w -= lr sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)`` at step ``t``, on Keras's own
    ``m``, ``v`` and step counter, so the learning-rate schedule and a later ``apply_gradients``
    carry on from here. Keras runs each line as separate operations, each reading and writing
    the whole variable (3.2 million numbers for the big layer); the fused kernel does all of it
    in one pass, which takes less than half the time on a CPU (``benchmarks/profile_step.py``).
    Results agree with Keras's to float32 rounding (about 1e-7 relative per step).

    Args:
        optimizer: a ``keras.optimizers.Adam`` for which :func:`can_fuse_adam` holds, built on
            ``variables`` (``optimizer.build(variables)``).
        gradients: one float32 gradient per variable, in the same order.
        variables: the float32 ``tf.Variable`` s to update.
    """
    import tensorflow as tf

    t = tf.cast(optimizer.iterations + 1, tf.float32)
    lr = tf.cast(optimizer.learning_rate, tf.float32)  # the schedule's rate at this step
    b1, b2 = tf.constant(optimizer.beta_1, tf.float32), tf.constant(optimizer.beta_2, tf.float32)
    b1_power, b2_power = tf.pow(b1, t), tf.pow(b2, t)
    epsilon = tf.constant(optimizer.epsilon, tf.float32)
    for gradient, variable in zip(gradients, variables):
        index = optimizer._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=optimizer._momentums[index].handle,
            v=optimizer._velocities[index].handle, beta1_power=b1_power, beta2_power=b2_power,
            lr=lr, beta1=b1, beta2=b2, epsilon=epsilon, grad=gradient)
    optimizer.iterations.assign_add(1)


def make_train_step(model: ArticleCNN, optimizer, compute_dtype: str = "float32",
                    jit_compile: bool = False):
    """One compiled training step: forward with dropout, loss, gradients, optimizer update.

    Returns a ``tf.function`` taking ``(images, labels, step)`` (float32 (batch, 28, 28, 1),
    int32 (batch,), and the step number, an int64 scalar) and returning ``(mean loss, number of
    correct predictions)``. The forward pass pools before each bias and ReLU
    (:meth:`~mnist_lessons.model.ArticleCNN.logits_pooled_first`: the same logits to rounding,
    with the bias and ReLU on a quarter of the values).
    The dropout mask is a stateless random function of ``(model seed, step)``, so a run repeats
    mask for mask. A plain Adam updates through
    :func:`fused_adam_update` (the same update as ``apply_gradients``, faster); any other
    optimizer through ``apply_gradients``. ``jit_compile`` asks XLA to fuse the step
    (measured slower on CPU here; see the benchmark).
    """
    import tensorflow as tf

    variables = model.variables
    seed = tf.constant(model.hp.seed, tf.int64)
    fused = can_fuse_adam(optimizer) and not jit_compile
    if fused:
        optimizer.build(variables)  # Keras's m and v for each variable, created once, here

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def train_step(images, labels, step):
        with tf.GradientTape() as tape:
            logits = model.logits_pooled_first(
                images, training=True, compute_dtype=compute_dtype,
                dropout_seed=tf.stack([seed, tf.cast(step, tf.int64)]))
            loss = cross_entropy(labels, logits)
        gradients = tape.gradient(loss, variables)
        if fused:
            fused_adam_update(optimizer, gradients, variables)
        else:
            optimizer.apply_gradients(zip(gradients, variables))
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
        """``epoch 2/10 [=====...............] 120/430 steps  loss 0.0412  5,400 images/s``."""
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


def accuracy_on(model: ArticleCNN, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``images`` (uint8 (N, 28, 28)) the model classifies right, dropout off."""
    return accuracy(predict_logits(model, images).argmax(axis=1), labels)


def train(model: ArticleCNN, data: MNIST, hp: Hyperparameters | None = None, *,
          optimizer: str = "adam", max_steps: int | None = None,
          target_accuracy: float | None = None, eval_every: int | None = None,
          evaluate: bool = True, n_validation: int = N_VALIDATION,
          track_training: bool = False, verbose: bool = True) -> History:
    """Train ``model`` on MNIST's training images less the validation ones; return its History.

    The first ``n_validation`` training images (5,000) are held out (see
    :func:`mnist_lessons.data.validation_split`): the network never trains on them, and every
    accuracy measured *during* training, and every decision to stop, uses them. The 10,000
    test images are measured once, after the last step, into ``History.test_accuracy``.

    Args:
        model: the network to train (its variables are updated in place).
        data: from :func:`mnist_lessons.data.load_mnist`.
        hp: batch size, epochs, learning rate, seed; defaults to the model's own.
        optimizer: ``"adam"`` (the article's) or ``"sgd"``.
        max_steps: stop after this many steps in all (the CI profile uses it).
        target_accuracy: stop as soon as the *validation* accuracy reaches it (e.g. 0.99).
        eval_every: also measure the validation accuracy every this many steps (else once per
            epoch).
        evaluate: measure accuracies at all (the benchmark turns it off).
        n_validation: how many training images to hold out (a number, never a set of images:
            the test set cannot be passed in to watch training with).
        track_training: at each evaluation, also measure the accuracy on the first 5,000
            training images with dropout off, to compare with the validation accuracy.
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
    if not evaluate and (target_accuracy is not None or eval_every is not None or track_training):
        raise ValueError("target_accuracy and eval_every need evaluations (so does "
                         "track_training): leave evaluate=True, or drop them")
    if not isinstance(n_validation, (int, np.integer)) or isinstance(n_validation, bool):
        raise TypeError(
            f"n_validation is the number of training images to hold out (e.g. {N_VALIDATION}), "
            f"got {type(n_validation).__name__}. Training is watched on images cut from the "
            "training set only; the test set is measured once, after training, by train() "
            "itself (History.test_accuracy), so it cannot be passed in for monitoring.")
    if len(data.x_train) == 0:
        raise ValueError("data holds no training images")
    split = validation_split(data, n_validation)
    set_seed(hp.seed)
    compute_dtype = resolve_precision(hp.precision)
    steps_per_epoch = -(-len(split.x_train) // hp.batch_size)
    total = hp.epochs * steps_per_epoch if max_steps is None else min(max_steps, hp.epochs * steps_per_epoch)
    opt = make_optimizer(optimizer, hp, total)
    train_step = make_train_step(model, opt, compute_dtype)

    history = History()
    n_watch = min(len(split.x_train), N_VALIDATION)

    def evaluate_now(step: int, seconds: float) -> float:
        acc = accuracy_on(model, split.x_val, split.y_val)
        history.evaluations.append((step, seconds, acc))
        if track_training:
            history.training_evaluations.append(
                (step, accuracy_on(model, split.x_train[:n_watch], split.y_train[:n_watch])))
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
        dataset = make_dataset(split.x_train, split.y_train, hp.batch_size, seed=hp.seed,
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
                             train_accuracy=int(correct) / images, validation_accuracy=acc,
                             seconds=epoch_seconds, images_per_second=images / epoch_seconds)
        history.epochs.append(record)
        extra = f"  train acc {record.train_accuracy:.2%}"
        extra += f"  validation acc {acc:.2%}" if acc is not None else ""
        progress.finish(Progress.line(epoch, n_epochs, len(losses), epoch_steps, record.loss,
                                      record.images_per_second, extra + f"  {epoch_seconds:.1f} s"))
    if history.target_reached:
        progress.finish(f"reached {target_accuracy:.1%} validation accuracy after "
                        f"{history.target_reached[0]} steps, {history.target_reached[1]:.1f} s of training")
    if evaluate:  # the test set, once, after every decision was taken on the validation images
        history.test_accuracy = accuracy_on_test_set(model, data)
        progress.finish(f"test accuracy, measured once after training: {history.test_accuracy:.2%}")
    return history
