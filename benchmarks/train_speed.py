"""Benchmark: how fast the package trains the article's network, against Keras ``fit``.

Run from the repository root after the set-up (``make env``):

    .venv/bin/python benchmarks/train_speed.py            # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/train_speed.py --quick    # throughput only
    .venv/bin/python benchmarks/train_speed.py --xla      # add XLA (jit_compile) to both sides

It prints, from one run on one machine:
1. images per second of the package's training step and of Keras ``model.fit`` at the SAME
   precision: float32 against float32, and bfloat16 against Keras's ``mixed_bfloat16`` policy.
   Same network (``build_keras_model`` is the package's network in Keras), same batch, the same
   cached batches, the same number of warm-up and timed steps, Adam on both sides. Each round
   times the two sides of a precision back to back, in turn first (the package in even rounds,
   Keras in odd ones), so each round gives a ratio taken within seconds: the headline ratio is
   the median of those paired ratios, printed with their range (this machine's speed drifts by
   tens of percent over minutes, which the ratio of two separate medians would absorb); the
   images per second are the medians of the rounds;
2. the seconds of training (evaluations excluded) to reach 99.0% validation accuracy (the 5,000
   held-out training images; the test set is measured once, at the end);
3. the test accuracy of the course-default run (trained once and cached).
Numbers are printed, never asserted: timings belong here, not in tests. The machine's load is
printed before and after the timing: figures taken under load are not comparable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mnist_lessons.checkpoints import trained_model  # noqa: E402
from mnist_lessons.config import settings  # noqa: E402
from mnist_lessons.data import load_mnist, make_dataset  # noqa: E402
from mnist_lessons.model import COURSE_DEFAULTS, FAST_TO_99, ArticleCNN, build_keras_model  # noqa: E402
from mnist_lessons.runtime import describe_runtime, resolve_precision, set_seed  # noqa: E402
from mnist_lessons.train import make_optimizer, make_train_step, train  # noqa: E402

WARMUP = 5  # steps run before the clock starts, on both sides (tracing, first-call set-up)
KERAS_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def load_average() -> str:
    """The 1-minute load average (Linux), or "n/a"."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "n/a"


def cpu_counters() -> tuple[float, float, float] | None:
    """(wall clock, seconds of CPU busy on the whole machine, seconds of CPU of this process).

    From ``/proc/stat`` (Linux); None elsewhere. Their differences over a round say how much
    CPU other processes took meanwhile.
    """
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait
    own = os.times()
    return time.perf_counter(), busy, own.user + own.system


def others_cores(before, after) -> float | None:
    """Cores' worth of CPU that other processes used between two :func:`cpu_counters`."""
    if before is None or after is None:
        return None
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0]))


def cached_batches(data, hp, n: int):
    """``n`` real training batches as one cached ``tf.data`` pipeline, filled before timing.

    Both sides read the same batches from the same kind of pipeline: the package's loop
    iterates it in Python as :func:`mnist_lessons.train.train` does; ``fit`` iterates it itself.
    """
    batches = [b for b, _ in zip(make_dataset(data.x_train, data.y_train, hp.batch_size,
                                              seed=hp.seed), range(n))]
    xs = tf.concat([x for x, _ in batches], 0)
    ys = tf.concat([y for _, y in batches], 0)
    ds = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(hp.batch_size).cache()
    for _ in ds:  # fill the cache outside the timing
        pass
    return ds.prefetch(tf.data.AUTOTUNE)


def package_step_rate(ds, hp, precision: str, steps: int, jit: bool = False) -> float:
    """Images per second of the package's training step, as ``train`` calls it."""
    model = ArticleCNN(hp)
    step_fn = make_train_step(model, make_optimizer("adam", hp, 10_000), precision,
                              jit_compile=jit)
    start = None
    for step, (x, y) in enumerate(ds):
        if step == WARMUP:
            float(loss)  # the warm-up steps are done (a CPU call returns when it is done)
            start = time.perf_counter()
        loss, _ = step_fn(x, y, tf.constant(step, tf.int64))
    float(loss)
    return steps * hp.batch_size / (time.perf_counter() - start)


class _Clock(keras.callbacks.Callback):
    """Reads the clock when the first timed batch starts and when training ends."""

    def __init__(self) -> None:
        super().__init__()
        self.start = self.end = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == WARMUP:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()


def keras_fit_rate(ds, hp, precision: str, steps: int, jit: bool = False) -> float:
    """Images per second of ``keras.Model.fit`` (one epoch over the batches), same precision.

    bfloat16 is Keras's ``mixed_bfloat16`` policy (float32 weights, bfloat16 compute), set for
    the model's construction and restored afterwards.
    """
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(KERAS_POLICY[precision])
    try:
        model = build_keras_model(hp)
        model.compile(optimizer=keras.optimizers.Adam(hp.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit)
        clock = _Clock()
        model.fit(ds, verbose=0, callbacks=[clock], shuffle=False)
        return steps * hp.batch_size / (clock.end - clock.start)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds, each timing both sides of each precision back to back "
                             "(an even number puts each side first equally often)")
    parser.add_argument("--quick", action="store_true", help="throughput only")
    parser.add_argument("--xla", action="store_true",
                        help="also time both sides with XLA (jit_compile=True), float32")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds and --steps must be at least 1, got {args.rounds} and {args.steps}")

    info = describe_runtime()
    data = load_mnist()
    hp = COURSE_DEFAULTS
    course_precision = resolve_precision(hp.precision)
    print(f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, {os.cpu_count()} CPU cores, "
          f"GPU: {info['gpu']}; course precision here: {course_precision}")
    print(f"Compared at the same precision, same network, same batch ({hp.batch_size}), same "
          f"steps ({WARMUP} warm-up + {args.steps} timed, same cached batches, Adam): the "
          f"package's step against Keras fit, back to back in each of {args.rounds} rounds "
          f"(each side first in turn).")
    set_seed(0)
    ds = cached_batches(data, hp, WARMUP + args.steps)
    rows = [("float32", False), ("bfloat16", False)] + ([("float32", True)] if args.xla else [])
    contenders = {}
    for precision, jit in rows:
        contenders[("package", precision, jit)] = (package_step_rate, precision, jit)
        contenders[("keras", precision, jit)] = (keras_fit_rate, precision, jit)
    print(f"load average before timing: {load_average()} (1 min)\n")
    rates: dict[tuple, list[float]] = {key: [] for key in contenders}
    paired: dict[tuple, list[float]] = {row: [] for row in rows}
    others: list[float] = []
    for round_ in range(args.rounds):
        for precision, jit in rows:
            sides = ("package", "keras") if round_ % 2 == 0 else ("keras", "package")
            for side in sides:
                run = contenders[(side, precision, jit)][0]
                before = cpu_counters()
                rates[(side, precision, jit)].append(run(ds, hp, precision, args.steps, jit))
                busy = others_cores(before, cpu_counters())
                if busy is not None:
                    others.append(busy)
            paired[(precision, jit)].append(rates[("package", precision, jit)][-1]
                                            / rates[("keras", precision, jit)][-1])
    medians = {key: statistics.median(r) for key, r in rates.items()}
    keras_name = {"float32": "Keras fit (float32)", "bfloat16": "Keras fit (mixed_bfloat16)"}
    print(f"{'precision':20s} {'package step':>14s} {'Keras fit':>14s}   package / Keras fit, "
          f"median of the {args.rounds} paired rounds (their range)")
    ratios = {}
    for precision, jit in rows:
        package, keras_rate = medians[("package", precision, jit)], medians[("keras", precision, jit)]
        label = precision + (", XLA" if jit else "")
        pairs = paired[(precision, jit)]
        ratios[label] = statistics.median(pairs)
        print(f"{label:20s} {package:8,.0f} img/s {keras_rate:8,.0f} img/s   {ratios[label]:5.2f}x "
              f"{keras_name[precision]}{' jit_compile' if jit else ''} "
              f"({min(pairs):.2f}-{max(pairs):.2f})")
    print(f"load average after timing: {load_average()} (1 min, this benchmark included)")
    if others:
        print(f"CPU used by other processes during the rounds: {statistics.mean(others):.2f} cores on "
              f"average, {max(others):.2f} at most (of {os.cpu_count()})")
    print(f"\nratio package step / Keras fit, same precision: float32 {ratios['float32']:.2f}x, "
          f"bfloat16 {ratios['bfloat16']:.2f}x (course precision here: {course_precision})")
    if args.quick:
        return

    fast = ArticleCNN(FAST_TO_99)
    h = train(fast, data, FAST_TO_99, target_accuracy=0.99, eval_every=25, verbose=False)
    if h.target_reached:
        step, seconds = h.target_reached
        print(f"99.0% validation accuracy after {seconds:.1f} s of training ({step} steps, "
              f"lr {FAST_TO_99.learning_rate} cosine, {resolve_precision(FAST_TO_99.precision)}; "
              f"test accuracy then {h.final_test_accuracy:.2%})")
    else:
        print(f"99.0% validation accuracy not reached in {FAST_TO_99.epochs} epochs "
              f"(last {h.final_validation_accuracy:.2%})")

    if settings().is_ci:
        print("course-default accuracy: skipped in the CI profile (it caps training steps)")
        return
    course = trained_model(COURSE_DEFAULTS, data=data, verbose=False)
    origin = "cached run" if course.from_cache else "trained now"
    print(f"course-default test accuracy: {course.history.final_test_accuracy:.2%} "
          f"({len(course.history.epochs)} epochs, {course.history.training_seconds:.0f} s of "
          f"training, {origin})")


if __name__ == "__main__":
    main()
