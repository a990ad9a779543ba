"""Benchmark: how fast the package trains the article's network, against Keras ``fit``.

Run from the repository root after the set-up (``make env``):

    .venv/bin/python benchmarks/train_speed.py            # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/train_speed.py --quick    # throughput only

It prints, from one run on one machine:
1. images per second of the package's training step (course precision, float32, float32 with
   XLA) and of Keras ``model.fit`` on the same network, batch and data (float32, and Keras's
   ``mixed_bfloat16`` policy), each the median of interleaved rounds, and their ratio;
2. the seconds of training (evaluations excluded) to reach 99.0% test accuracy;
3. the test accuracy of the course-default run (trained once and cached).
Numbers are printed, never asserted: timings belong here, not in tests.
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
from mnist_lessons.model import COURSE_DEFAULTS, FAST_TO_99  # noqa: E402
from mnist_lessons.config import settings  # noqa: E402
from mnist_lessons.data import load_mnist, make_dataset  # noqa: E402
from mnist_lessons.model import ArticleCNN, build_keras_model  # noqa: E402
from mnist_lessons.runtime import describe_runtime, resolve_precision, set_seed  # noqa: E402
from mnist_lessons.train import make_optimizer, make_train_step, train  # noqa: E402


def batches(data, hp, n):
    """``n`` real training batches, prepared once so every contender trains on the same data."""
    ds = make_dataset(data.x_train, data.y_train, hp.batch_size, seed=hp.seed).repeat()
    return [b for b, _ in zip(ds, range(n))]


def package_step_rate(data_batches, hp, precision, jit=False, warmup=5):
    """Images per second of the package's training step over the given batches."""
    model = ArticleCNN(hp)
    step = make_train_step(model, make_optimizer("adam", hp, 10_000), precision, jit_compile=jit)
    for x, y in data_batches[:warmup]:
        float(step(x, y)[0])
    start = time.perf_counter()
    for x, y in data_batches[warmup:]:
        loss, _ = step(x, y)
    float(loss)
    return (len(data_batches) - warmup) * hp.batch_size / (time.perf_counter() - start)


def keras_fit_rate(data_batches, hp, policy="float32", warmup=5):
    """Images per second of ``keras.Model.fit`` on the same batches (one epoch over them)."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_keras_model(hp)
        model.compile(optimizer=keras.optimizers.Adam(hp.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        xs = tf.concat([x for x, _ in data_batches], 0)
        ys = tf.concat([y for _, y in data_batches], 0)
        ds = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(hp.batch_size)
        model.fit(ds.take(warmup), verbose=0)
        timed = ds.skip(warmup).cache()
        for _ in timed:  # fill the cache outside the timing
            pass
        start = time.perf_counter()
        model.fit(timed, verbose=0)
        return (len(data_batches) - warmup) * hp.batch_size / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per contender")
    parser.add_argument("--quick", action="store_true", help="throughput only")
    args = parser.parse_args()

    info = describe_runtime()
    data = load_mnist()
    hp = COURSE_DEFAULTS
    course_precision = resolve_precision(hp.precision)
    print(f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, {os.cpu_count()} CPU cores, "
          f"GPU: {info['gpu']}; course precision here: {course_precision}")
    print(f"batch {hp.batch_size}, {args.steps} timed steps x {args.rounds} rounds, median\n")
    set_seed(0)
    data_batches = batches(data, hp, args.steps + 5)
    contenders = {
        f"package step ({course_precision})": lambda: package_step_rate(data_batches, hp, course_precision),
        "package step (float32)": lambda: package_step_rate(data_batches, hp, "float32"),
        "package step (float32, XLA)": lambda: package_step_rate(data_batches, hp, "float32", jit=True),
        "Keras fit (float32)": lambda: keras_fit_rate(data_batches, hp),
        "Keras fit (mixed_bfloat16)": lambda: keras_fit_rate(data_batches, hp, "mixed_bfloat16"),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            rates[name].append(run())
    medians = {name: statistics.median(r) for name, r in rates.items()}
    keras_fp32 = medians["Keras fit (float32)"]
    for name, rate in medians.items():
        print(f"{name:32s} {rate:8,.0f} images/s   {rate / keras_fp32:5.2f}x Keras fit (float32)")
    package = medians[f"package step ({course_precision})"]
    print(f"\nratio package step / Keras fit (float32): {package / keras_fp32:.2f}")
    if args.quick:
        return

    fast = ArticleCNN(FAST_TO_99)
    h = train(fast, data, FAST_TO_99, target_accuracy=0.99, eval_every=25, verbose=False)
    if h.target_reached:
        step, seconds = h.target_reached
        print(f"99.0% test accuracy after {seconds:.1f} s of training ({step} steps, "
              f"lr {FAST_TO_99.learning_rate} cosine, {resolve_precision(FAST_TO_99.precision)})")
    else:
        print(f"99.0% not reached in {FAST_TO_99.epochs} epochs (best {h.final_test_accuracy:.2%})")

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
