"""Profile: where one training step of the package spends its time, against the multiply limit.

Run from the repository root after the set-up (``make env``):

    .venv/bin/python benchmarks/profile_step.py             # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/profile_step.py --no-trace  # phases only, no per-op table

It prints, from one run on one machine:
1. this CPU's matrix-multiply peak (a large ``tf.matmul``, float32 and bfloat16), and the images
   per second it would allow at the network's cost per image (forward + backward, counted below);
2. the time per step of each phase (input pipeline alone, forward, forward + backward, each in
   the article's order and pooled before the bias and ReLU as the step computes it, the Adam
   update alone, Keras's and as one fused kernel per variable, the whole step) for float32 and
   bfloat16, measured in interleaved rounds;
3. with the trace (the default), every operation of the step from a ``tf.profiler`` trace,
   grouped by layer and kind, in milliseconds per step, with the multiply rate of the big ones,
   and how the multiplies compare with everything else. Two operations can run at once (TF's
   inter-op threads), so the operations add up to more than the step's wall time.
Numbers are printed, never asserted.

``--inter`` and ``--intra`` set TensorFlow's thread pools (``tf.config.threading``) to try them.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from mnist_lessons.data import load_mnist, make_dataset  # noqa: E402
from mnist_lessons.model import COURSE_DEFAULTS, ArticleCNN  # noqa: E402
from mnist_lessons.train import (  # noqa: E402
    cross_entropy,
    fused_adam_update,
    make_optimizer,
    make_train_step,
)

BATCH = COURSE_DEFAULTS.batch_size


def network_flops() -> dict[str, float]:
    """Multiply-adds (x2, in FLOP) per image of one training step, by layer and pass.

    Backward: the weight gradient costs what the forward does, and so does the input gradient
    (none for conv1: its input is the image).
    """
    conv1 = 2 * 28 * 28 * 32 * 5 * 5 * 1
    conv2 = 2 * 14 * 14 * 64 * 5 * 5 * 32
    fc = 2 * 3136 * 1024
    out = 2 * 1024 * 10
    return {"conv1 forward": conv1, "conv2 forward": conv2, "fc forward": fc, "out forward": out,
            "conv1 weight grad": conv1, "conv2 weight grad": conv2, "conv2 input grad": conv2,
            "fc weight grad": fc, "fc input grad": fc, "out grads": 2 * out}


def matmul_peak(dtype: str, n: int = 2048, repeats: int = 8) -> float:
    """Best FLOP/s of an n x n x n ``tf.matmul`` in ``dtype``."""
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    mm = tf.function(lambda x: tf.matmul(x, x))
    float(tf.reduce_sum(tf.cast(mm(a)[:1, :1], tf.float32)))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        r = mm(a)
        r.numpy()[:1]
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def shaped_matmul_rate(dtype: str, m: int, k: int, n: int, repeats: int = 30) -> float:
    """FLOP/s of one (m, k) x (k, n) matmul, as in the FC layer (median of calls)."""
    a = tf.cast(tf.random.uniform((m, k)), dtype)
    b = tf.cast(tf.random.uniform((k, n)), dtype)
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    mm(a, b).numpy()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b).numpy()
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times)


def interleaved(calls: dict, args_list, rounds: int = 6) -> dict[str, float]:
    """Median seconds per call of each function, measured in interleaved rounds.

    ``calls`` maps a name to a function taking the items of ``args_list``; each round calls
    every function on a few items in turn, so that a change in the machine's speed (other jobs)
    falls on all of them alike. A CPU function call returns when its work is done.
    """
    for fn in calls.values():  # trace and warm up
        for args in args_list[:2]:
            tf.nest.flatten(fn(*args))[0].numpy()
    per_round = max(1, (len(args_list) - 2) // rounds)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        chunk = args_list[2 + r * per_round: 2 + (r + 1) * per_round]
        for name, fn in calls.items():
            for args in chunk:
                t = time.perf_counter()
                tf.nest.flatten(fn(*args))[0].numpy()
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def phases(batches, dtype: str) -> dict[str, float]:
    """Seconds per step of the forward, forward + backward, the optimizer alone, the whole step."""
    hp = COURSE_DEFAULTS
    model = ArticleCNN(hp)
    variables = model.variables
    seed = tf.constant(hp.seed, tf.int64)
    args = [(x, y, tf.constant(i, tf.int64)) for i, (x, y) in enumerate(batches)]

    def loss_of(images, labels, step, pooled_first=True):
        kwargs = dict(training=True, compute_dtype=dtype, dropout_seed=tf.stack([seed, step]))
        logits = (model.logits_pooled_first(images, **kwargs) if pooled_first
                  else model.stages(images, **kwargs)["logits"])
        return cross_entropy(labels, logits)

    def gradients_of(pooled_first: bool):
        @tf.function
        def forward_backward(images, labels, step):
            with tf.GradientTape() as tape:
                loss = loss_of(images, labels, step, pooled_first)
            return loss, tape.gradient(loss, variables)
        return forward_backward

    _, grads = gradients_of(True)(*args[0])
    keras_adam = make_optimizer("adam", hp, 10_000)
    keras_adam.build(variables)
    one_kernel_adam = make_optimizer("adam", hp, 10_000)
    one_kernel_adam.build(variables)

    def keras_update(*_):
        keras_adam.apply_gradients(zip(grads, variables))
        return keras_adam.iterations

    def fused_update(*_):
        fused_adam_update(one_kernel_adam, grads, variables)
        return one_kernel_adam.iterations

    calls = {
        "call overhead (empty tf.function, same inputs)":
            tf.function(lambda images, labels, step: tf.reduce_sum(labels)),
        "forward + loss, article's order (stages)":
            tf.function(lambda *a: loss_of(*a, pooled_first=False)),
        "forward + loss, pooled first (the step's)": tf.function(loss_of),
        "forward + backward, article's order (stages)": gradients_of(False),
        "forward + backward, pooled first (the step's)": gradients_of(True),
        "Adam update alone, Keras (per-variable ops)": tf.function(keras_update),
        "Adam update alone, fused (fused_adam_update)": tf.function(fused_update),
        "whole step (make_train_step, fused Adam)":
            make_train_step(model, make_optimizer("adam", hp, 10_000), dtype),
    }
    return interleaved(calls, args)


def pipeline_rate(data, shift: int, steps: int) -> float:
    """Images per second of ``make_dataset`` alone (one epoch's first ``steps`` batches)."""
    ds = make_dataset(data.x_train, data.y_train, BATCH, seed=0, shift=shift)
    it = iter(ds)
    next(it)
    t = time.perf_counter()
    n = 0
    for (x, _), _ in zip(it, range(steps)):
        n += int(x.shape[0])
    return n / (time.perf_counter() - t)


# --- Per-operation table from a tf.profiler trace --------------------------------------------


def _graph_ops(concrete) -> dict[str, tf.Operation]:
    ops = {op.name: op for op in concrete.graph.get_operations()}
    for f in concrete.graph._functions.values():  # nested functions (the optimizer's update)
        try:
            ops.update({op.name: op for op in f.graph.get_operations()})
        except AttributeError:
            pass
    return ops


def _shape(t) -> tuple:
    return tuple(t.shape.as_list()) if t.shape.rank is not None else ()


def _layer_of(shapes: list[tuple]) -> str:
    """Which layer a tensor shape belongs to (batch 128 activations or weights)."""
    shapes = [s[-1:] if len(s) > 1 and set(s[:-1]) == {1} else s for s in shapes]  # biases
    for s in shapes:
        if s in ((5, 5, 1, 32),) or s[1:] in ((28, 28, 32), (28, 28, 1)) or s == (32,):
            return "conv1"
    for s in shapes:
        if s in ((5, 5, 32, 64),) or s[1:] in ((14, 14, 64), (14, 14, 32)) or s == (64,):
            return "conv2"
    for s in shapes:
        if s in ((3136, 1024),) or s[1:] in ((7, 7, 64), (3136,)) or s == (1024,):
            return "fc"
    for s in shapes:
        if s in ((1024, 10),) or s[1:] == (10,) or s == (10,):
            return "out"
    return ""


def _layer_of_channels(shapes: list[tuple]) -> str:
    """The layer of a bias, ReLU or their gradients, from the channel count (last dimension):
    pooled first, conv1's ReLU runs on (N, 14, 14, 32), a shape conv2's input also has."""
    names = {32: "conv1", 64: "conv2", 1024: "fc", 10: "out"}
    return next((names[s[-1]] for s in shapes if s and s[-1] in names), "")


MULTIPLY = re.compile(r"forward \((conv|matmul)|grad \((Conv2D|MatMul)")


def categorise(name: str, kind: str, ops: dict[str, tf.Operation]) -> str:
    """A readable row for one traced operation ``name:kind``."""
    if re.match(r"(adam|sgd)(_\d+)?/", name, re.IGNORECASE) or kind.startswith("ResourceApply"):
        return "optimizer update (Adam, all variables)"
    op = ops.get(name)
    in_shapes = [_shape(t) for t in op.inputs] if op is not None else []
    out_shapes = [_shape(t) for t in op.outputs] if op is not None else []
    grad = name.startswith("gradient_tape/")
    if "FusedConv2D" in kind:  # conv + bias + ReLU, fused by the oneDNN graph rewrite
        conv = op.inputs[0].op.inputs[0].op if op is not None else None
        layer = _layer_of([_shape(t) for t in conv.inputs]) if conv is not None else "?"
        return f"{layer} forward (conv + bias + ReLU, fused)"
    if "FusedMatMul" in kind:  # matmul + bias (+ ReLU), fused the same way
        return "fc forward (matmul + bias + ReLU, fused)" if "Relu" in name else \
            "out forward (matmul + bias, fused)"
    if "Conv2DBackpropFilter" in kind:
        return f"{_layer_of(out_shapes + in_shapes)} weight grad (Conv2DBackpropFilter)"
    if "Conv2DBackpropInput" in kind:
        return f"{_layer_of(in_shapes)} input grad (Conv2DBackpropInput)"
    if kind.endswith("Conv2D"):  # pooled first, the conv runs without its bias and ReLU
        return f"{_layer_of([_shape(t) for t in op.inputs]) if op is not None else '?'} forward (conv)"
    if "MatMul" in kind and grad:
        layer = _layer_of(out_shapes)
        w = out_shapes[0] in ((3136, 1024), (1024, 10)) if out_shapes else False
        return f"{layer} {'weight' if w else 'input'} grad (MatMul)"
    if "MatMul" in kind:
        return f"{_layer_of(in_shapes + out_shapes)} forward (MatMul)"
    if "MaxPoolGrad" in kind:
        return f"max-pool grads ({_layer_of(in_shapes)})"
    if "MaxPool" in kind:
        return "max-pool forward"
    if kind == "ReluGrad":
        return f"ReLU grads ({_layer_of_channels(in_shapes)})"
    if grad and kind in ("Sum", "BiasAddGrad"):
        return f"bias grads ({_layer_of_channels(out_shapes)}, {kind})"
    if not grad and kind in ("AddV2", "BiasAdd", "Relu") and _layer_of_channels(out_shapes):
        return f"bias + ReLU forward ({_layer_of_channels(out_shapes)})"
    if kind == "Cast":
        layer = _layer_of(in_shapes)
        return f"casts ({'fc weights' if layer == 'fc' else 'other'})"
    if "dropout" in name:
        return "dropout (forward + grad)"
    if "SparseSoftmax" in name or kind in ("Mean", "ArgMax", "Equal", "Sum"):
        return "loss, accuracy"
    if kind in ("ReadVariableOp", "AssignVariableOp"):
        return "variable reads"
    return f"other ({kind})"


def op_table(batches, dtype: str, steps: int, logdir: str,
             step_fn=None) -> tuple[float, list[tuple]]:
    """Trace ``steps`` whole steps; return wall seconds per step and rows (name, ms per step).

    ``step_fn``: a training step taking ``(images, labels, step)``; the package's by default.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    if step_fn is None:
        hp = COURSE_DEFAULTS
        step_fn = make_train_step(ArticleCNN(hp), make_optimizer("adam", hp, 10_000), dtype)
    args = [(x, y, tf.constant(i, tf.int64)) for i, (x, y) in enumerate(batches)]
    for a in args[:3]:
        float(step_fn(*a)[0])
    ops = _graph_ops(step_fn.get_concrete_function(*args[0]))
    shutil.rmtree(logdir, ignore_errors=True)
    tf.profiler.experimental.start(logdir)
    t = time.perf_counter()
    for a in args[3:3 + steps]:
        loss, _ = step_fn(*a)
    float(loss)
    wall = (time.perf_counter() - t) / steps
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    total: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for e in line.events:
                label = plane.event_metadata[e.metadata_id].name
                if ":" not in label or "::" in label:
                    continue
                name, kind = label.rsplit(":", 1)
                total[categorise(name, kind, ops)] += e.duration_ps / 1e9 / steps
    return wall, total.most_common()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--no-trace", action="store_true", help="skip the per-operation table")
    parser.add_argument("--inter", type=int, default=0, help="inter-op threads (0: TF's default)")
    parser.add_argument("--intra", type=int, default=0, help="intra-op threads (0: TF's default)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()
    if args.inter:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    if args.intra:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    dtypes = args.dtypes.split(",")

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, threads inter "
          f"{args.inter or 'default'} intra {args.intra or 'default'}, batch {BATCH}; "
          f"load average {open('/proc/loadavg').read().split()[0]} (1 min)")
    flops = network_flops()
    per_image = sum(flops.values())
    print(f"network: {per_image / 1e6:.1f} MFLOP per image for one training step "
          f"(forward {sum(v for k, v in flops.items() if 'forward' in k) / 1e6:.1f}, "
          f"backward {sum(v for k, v in flops.items() if 'forward' not in k) / 1e6:.1f})\n")

    peaks = {}
    for dtype in dtypes:
        peaks[dtype] = matmul_peak(dtype)
        fc = shaped_matmul_rate(dtype, BATCH, 3136, 1024)
        print(f"{dtype:9s} matmul peak (2048^3): {peaks[dtype] / 1e9:7.0f} GFLOP/s -> multiply limit "
              f"{peaks[dtype] / per_image:6,.0f} images/s ({1e3 * per_image * BATCH / peaks[dtype]:5.1f}"
              f" ms per step); FC-shaped 128x3136x1024: {fc / 1e9:4.0f} GFLOP/s")

    data = load_mnist()
    print(f"\ninput pipeline alone (make_dataset, prefetching): "
          f"{pipeline_rate(data, 0, 200):8,.0f} images/s without shift, "
          f"{pipeline_rate(data, COURSE_DEFAULTS.shift, 200):8,.0f} with shift "
          f"{COURSE_DEFAULTS.shift} (the course's)")
    batches = [b for b, _ in zip(make_dataset(data.x_train, data.y_train, BATCH, seed=0),
                                 range(args.steps + 3))]

    for dtype in dtypes:
        print(f"\n{dtype}: milliseconds per step of {BATCH} (median of {args.steps} calls each, "
              f"in interleaved rounds)")
        result = phases(batches, dtype)
        whole = result["whole step (make_train_step, fused Adam)"]
        for name, seconds in result.items():
            print(f"  {name:50s} {1e3 * seconds:7.2f} ms  {BATCH / seconds:8,.0f} images/s")
        limit = per_image * BATCH / peaks[dtype]
        print(f"  {'multiply limit at the ' + dtype + ' matmul peak':50s} {1e3 * limit:7.2f} ms  "
              f"{BATCH / limit:8,.0f} images/s (the whole step reaches {limit / whole:.0%} of it)")

    if args.no_trace:
        return
    for dtype in dtypes:
        wall, rows = op_table(batches, dtype, min(args.steps, 20),
                              os.path.join(tempfile.gettempdir(), f"profile_step_{dtype}"))
        summed = sum(ms for _, ms in rows)
        print(f"\n{dtype}: operations of one traced step, ms per step (wall {1e3 * wall:.1f} ms; "
              f"the ops add up to {summed:.1f} ms, more than the wall time where two ran at once)")
        for name, ms in rows:
            if ms < 0.05:
                continue
            rate = ""
            key = next((k for k in flops if name.startswith(k.split(" (")[0])), None)
            if key and ms > 0:
                rate = f"  {flops[key] * BATCH / (ms / 1e3) / 1e9:6.0f} GFLOP/s"
            print(f"  {name:52s} {ms:7.2f} ms {ms / summed:6.1%}{rate}")
        multiplies = sum(ms for name, ms in rows if MULTIPLY.search(name))
        print(f"  -> multiplies (convolutions, matmuls): {multiplies:.1f} ms, "
              f"{per_image * BATCH / (multiplies / 1e3) / 1e9:.0f} GFLOP/s on average (at the "
              f"matmul peak: {1e3 * per_image * BATCH / peaks[dtype]:.1f} ms); everything else "
              f"(optimizer, casts, bias and ReLU gradients, pooling, dropout, loss): "
              f"{summed - multiplies:.1f} ms")


if __name__ == "__main__":
    main()
