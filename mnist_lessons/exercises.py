"""Automatic checks for the chapters' coding exercises.

Each ``check_*`` function takes the student's answer (usually a function), runs it on cases of
its own, edge cases the exercise text does not show included, and prints a verdict: what passed,
and for a wrong answer a hint about what is off. It never raises for what the answer does: a
wrong type, ``None``, a function that raises (``sys.exit()`` included) or runs too long all get
a clear message, so a checker cannot crash the notebook. Only an interrupt (the notebook's stop
button) stops a check, as it should. The verdict is also returned (truthy when everything
passed) for scripts and tests.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .numpy_ops import conv2d_numpy, pool2d_numpy, softmax_stable

TIME_LIMIT_S = 20.0


class Wrong(Exception):
    """Raised by a case when the answer is wrong; its message is the hint shown to the student."""


@dataclass
class Verdict:
    """The outcome of one checker: each case's name, whether it passed, and the hint if not."""

    exercise: str
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(ok for _, ok, _ in self.results)

    def __bool__(self) -> bool:
        return self.passed

    def text(self) -> str:
        """The verdict as the student sees it."""
        lines = []
        for name, ok, hint in self.results:
            lines.append(f"  {'✓' if ok else '✗'} {name}" + ("" if ok else f"\n      hint: {hint}"))
        n_ok = sum(ok for _, ok, _ in self.results)
        head = (f"{self.exercise}: all {n_ok} checks passed. Well done!" if self.passed else
                f"{self.exercise}: {n_ok} of {len(self.results)} checks passed.")
        return "\n".join([head, *lines])

    def _ipython_display_(self) -> None:  # already printed: show nothing more in a notebook
        pass

    def __repr__(self) -> str:
        return f"Verdict({self.exercise!r}, passed={self.passed})"


class _TimedOut(Exception):
    pass


def _call(fn: Callable, *args: Any) -> Any:
    """Call the student's function in a worker thread, giving up after ``TIME_LIMIT_S``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - reported to the student, not raised
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(TIME_LIMIT_S)
    if worker.is_alive():
        raise _TimedOut()
    if "error" in box:
        if isinstance(box["error"], SystemExit):  # would end the check, not report on it
            raise Wrong("your code called exit() or sys.exit(), which stops a program: return "
                        "the value instead")
        raise box["error"]
    return box["value"]


def _run(exercise: str, answer: Any, cases: list[tuple[str, Callable[[Any], None]]],
         expect_callable: bool = True) -> Verdict:
    """Run every case on ``answer`` and print the verdict; never raise."""
    verdict = Verdict(exercise)
    if answer is None:
        verdict.results.append(("an answer was given", False, "the answer is None: define it first"))
    elif expect_callable and not callable(answer):
        verdict.results.append(("the answer is a function", False,
                                f"expected a function, got a {type(answer).__name__}: pass the "
                                "function itself, without calling it (no parentheses)"))
    else:
        for name, case in cases:
            try:
                case(answer)
                verdict.results.append((name, True, ""))
            except Wrong as wrong:
                verdict.results.append((name, False, str(wrong)))
            except _TimedOut:
                verdict.results.append((name, False, f"took longer than {TIME_LIMIT_S:.0f} s; "
                                        "look for a loop that never ends or a very slow one"))
                break  # the call still runs in its thread: another would only wait, and add one
            except NotImplementedError:
                verdict.results.append((name, False, "not done yet: replace the "
                                        "`raise NotImplementedError` with your code"))
                break
            except Exception as err:  # noqa: BLE001 - the student's bug, reported kindly
                verdict.results.append((name, False, f"your code raised {type(err).__name__}: "
                                        f"{str(err).splitlines()[0][:160] if str(err) else ''}"))
    print(verdict.text())
    return verdict


def _array(value: Any, what: str) -> np.ndarray:
    try:
        import tensorflow as tf

        if isinstance(value, tf.Tensor):
            value = value.numpy()
    except ImportError:  # pragma: no cover
        pass
    if value is None:
        raise Wrong(f"{what} returned None: did you forget `return`?")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"{what} returned a {type(value).__name__}, not numbers") from None


def _same(got: np.ndarray, want: np.ndarray, what: str, hints: list[tuple[np.ndarray, str]] = (),
          tol: float = 1e-5) -> None:
    if got.shape != want.shape:
        raise Wrong(f"{what} has shape {got.shape}, expected {want.shape}")
    if np.allclose(got, want, rtol=tol, atol=tol):
        return
    for wrong, hint in hints:
        if wrong.shape == got.shape and np.allclose(got, wrong, rtol=tol, atol=tol):
            raise Wrong(hint)
    raise Wrong(f"{what} has the right shape but wrong values (largest error "
                f"{np.abs(got - want).max():.3g})")


# ---- chapter 1 -------------------------------------------------------------------------------


def check_numerical_gradient(fn: Any) -> Verdict:
    """Exercise 1.1: ``numerical_gradient(f, x, h)``: central differences, one partial derivative
    per element of the 1-D array ``x``, checked against ``tf.GradientTape``."""
    import tensorflow as tf

    functions = {  # TensorFlow forms, so the tape can differentiate them
        "sum(x**3)": lambda t: tf.reduce_sum(t**3),
        "sin(x[0]) * x[1] + x[1]**2": lambda t: tf.sin(t[0]) * t[1] + t[1] ** 2,
        "log(sum(exp(x)))": lambda t: tf.reduce_logsumexp(t),
    }

    def case(name, x, h=1e-5):
        def run(f):
            tf_fn = functions[name]
            def f_numpy(values):  # what the student's function receives: NumPy in, float out
                return float(tf_fn(tf.constant(np.asarray(values, dtype=np.float64))))

            x0 = np.asarray(x, dtype=np.float64)
            given = x0.copy()
            got = _array(_call(f, f_numpy, given, h), "numerical_gradient(f, x, h)")
            if not np.array_equal(given, x0):
                raise Wrong("x was changed: nudge a copy (x.copy()), or put each element back "
                            "after you nudge it")
            var = tf.Variable(x0)
            with tf.GradientTape() as tape:
                y = tf_fn(var)
            want = tape.gradient(y, var).numpy()  # the oracle
            if got.shape != want.shape:
                raise Wrong(f"return one partial derivative per element of x, shape {want.shape}, "
                            f"got {got.shape}: nudge one element at a time")
            eye = np.eye(x0.size)
            forward = np.array([(f_numpy(x0 + h * e) - f_numpy(x0)) / h for e in eye])
            _same(got, want, f"the gradient of {name}", tol=1e-6, hints=[
                (2 * want, "twice too large: the two points x - h and x + h are 2h apart, so "
                 "divide by 2 * h"),
                (-want, "the sign is flipped: (f(x + h) - f(x - h)), not the other way round"),
                (forward, "that is the one-sided difference (f(x + h) - f(x)) / h, off by about "
                 "h; the central one, (f(x + h) - f(x - h)) / (2 * h), is far more accurate"),
            ])
        return run

    return _run("Exercise 1.1 (numerical_gradient)", fn, [
        ("sum(x**3) at [1, 2, 3]", case("sum(x**3)", [1.0, 2.0, 3.0])),
        ("a function mixing two elements", case("sin(x[0]) * x[1] + x[1]**2", [0.5, -1.5])),
        ("log-sum-exp at 5 points", case("log(sum(exp(x)))", [0.1, -2.0, 3.0, 0.0, 1.0])),
        ("one element", case("sum(x**3)", [-2.0])),
    ])


# ---- chapter 2 -------------------------------------------------------------------------------


def check_xent_grad(fn: Any) -> Verdict:
    """Exercise 2.1: ``xent_grad(logits, labels)``: the gradient of the mean softmax cross-entropy
    with respect to the logits, ``(softmax(logits) - one_hot(labels)) / N``, checked against
    ``tf.GradientTape``."""
    import tensorflow as tf

    rng = np.random.default_rng(2)

    def tape_gradient(logits, labels):  # the oracle: TensorFlow differentiates the loss itself
        z = tf.Variable(logits)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.constant(labels, tf.int64), logits=z))
        return tape.gradient(loss, z).numpy()

    def case(n, scale=1.0):
        def run(f):
            labels = rng.integers(0, 10, n)
            logits = scale * rng.normal(size=(n, 10))
            with np.errstate(all="ignore"):
                got = _array(_call(f, logits.copy(), labels.copy()), "xent_grad(logits, labels)")
            want = tape_gradient(logits, labels)
            if got.shape == want.shape and not np.all(np.isfinite(got)):
                raise Wrong("nan or inf: subtract each row's largest logit before exp")
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            onehot = np.eye(10)[labels]
            p_cols = np.exp(logits) / np.exp(logits).sum(0, keepdims=True) if scale < 100 else p
            _same(got, want, "the gradient", hints=[
                (n * want, "that is the gradient of the *sum* of the losses; the loss is their "
                 "mean, so divide by the number of images N"),
                (-want, "the sign is flipped: it is p - y, softmax minus one-hot"),
                (-n * want, "the sign is flipped (y - p), and the mean divides by N"),
                ((p_cols - onehot) / n, "softmax is taken along each row (axis=1, over the ten "
                 "digits), not down the columns"),
                ((p - labels[:, None]) / n, "y is the one-hot label, not the digit: a 1 at the "
                 "label's position, 0 elsewhere"),
                (p / n, "subtract the one-hot labels: the gradient is p - y"),
            ])
        return run

    return _run("Exercise 2.1 (xent_grad)", fn, [
        ("a batch of 8", case(8)),
        ("one image", case(1)),
        ("a batch of 100", case(100)),
        ("large logits do not overflow", case(16, scale=500.0)),
    ])


# ---- chapter 3 -------------------------------------------------------------------------------


def check_steps_per_epoch(fn: Any) -> Verdict:
    """Exercise 3.1: ``steps_per_epoch(n_images, batch_size, drop_last)``."""
    def case(n, b, drop):
        def run(f):
            got = _call(f, n, b, drop)
            want = n // b if drop else -(-n // b)
            if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
                raise Wrong(f"return a whole number of steps (an int), got {type(got).__name__} {got!r}")
            if got != want:
                other = -(-n // b) if drop else n // b
                hint = ("with drop_last=False the last, smaller batch is a step too: round up"
                        if not drop and got == other else
                        "with drop_last=True the leftover images are skipped: round down"
                        if drop and got == other else f"expected {want}, got {got}")
                raise Wrong(hint)
        return run

    return _run("Exercise 3.1 (steps_per_epoch)", fn, [
        ("60,000 images in batches of 128, last batch kept", case(60_000, 128, False)),
        ("the article's loop: last batch dropped", case(60_000, 128, True)),
        ("a batch size that divides exactly", case(60_000, 100, False)),
        ("fewer images than one batch", case(50, 128, False)),
    ])


# ---- chapter 4 -------------------------------------------------------------------------------


def check_conv_params(fn: Any) -> Verdict:
    """Exercise 4.1: ``conv_params(kh, kw, c_in, c_out)``: weights plus biases of a conv layer."""
    def case(kh, kw, cin, cout):
        def run(f):
            got = _call(f, kh, kw, cin, cout)
            want = kh * kw * cin * cout + cout
            if got == want:
                return
            if got == kh * kw * cin * cout:
                raise Wrong("you counted the weights only: add one bias per filter (c_out)")
            if got == kh * kw * cout + cout:
                raise Wrong("each filter spans every input channel: multiply by c_in too")
            if got == kh * kw * cin * cout + cin:
                raise Wrong("there is one bias per *output* channel (filter), not per input channel")
            raise Wrong(f"for a {kh}x{kw} kernel, {cin} -> {cout} channels expected {want:,}, got {got!r}")
        return run

    return _run("Exercise 4.1 (conv_params)", fn, [
        ("the article's conv1: 5x5, 1 -> 32", case(5, 5, 1, 32)),
        ("the article's conv2: 5x5, 32 -> 64", case(5, 5, 32, 64)),
        ("a 3x3 layer, 64 -> 128", case(3, 3, 64, 128)),
        ("a non-square 1x7 kernel", case(1, 7, 16, 8)),
    ])


# ---- chapter 5 -------------------------------------------------------------------------------


def check_conv_output_size(fn: Any) -> Verdict:
    """Exercise 5.1: ``conv_output_size(size, kernel, stride, padding)``: the height (or width)
    of a convolution's output, for ``padding`` "SAME" or "VALID", as ``tf.nn.conv2d`` gives it."""
    import tensorflow as tf

    def real(size, kernel, stride, padding):  # the oracle: run the convolution and look
        out = tf.nn.conv2d(tf.zeros([1, size, 1, 1]), tf.zeros([kernel, 1, 1, 1]),
                           strides=[1, stride, 1, 1], padding=padding)
        return int(out.shape[1])

    def cases(padding, combos):
        def run(f):
            for size, kernel, stride in combos:
                got = _call(f, size, kernel, stride, padding)
                want = real(size, kernel, stride, padding)
                if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
                    if isinstance(got, float) and got == want:
                        raise Wrong("return an int, not a float: use // (floor division) "
                                    "rather than /, or wrap the result in int(...)")
                    raise Wrong(f"return a whole number (an int), got {type(got).__name__} {got!r}")
                if got == want:
                    continue
                where = f"size {size}, kernel {kernel}, stride {stride}, {padding}"
                if padding == "VALID" and got == (size - kernel) // stride:
                    raise Wrong(f"{where}: off by one; the first window counts too: "
                                "(size - kernel) // stride + 1")
                if padding == "VALID" and got == -(-(size - kernel) // stride) + 1:
                    raise Wrong(f"{where}: round the number of whole moves down, not up")
                if padding == "SAME" and got == size and stride > 1:
                    raise Wrong(f"{where}: SAME keeps the size only with stride 1; with a stride "
                                "it is ceil(size / stride)")
                if padding == "SAME" and got == size // stride:
                    raise Wrong(f"{where}: round up, not down: SAME gives ceil(size / stride) "
                                "(a last, partly padded window counts)")
                if padding == "SAME" and got == (size - kernel) // stride + 1:
                    raise Wrong(f"{where}: that is VALID's formula; SAME pads, so the kernel "
                                "size drops out: ceil(size / stride)")
                if padding == "VALID" and got == -(-size // stride):
                    raise Wrong(f"{where}: that is SAME's formula; VALID does not pad, so the "
                                "kernel must fit: (size - kernel) // stride + 1")
                raise Wrong(f"{where}: expected {want}, got {got!r}")
        return run

    valid = [(s, k, st) for s in (5, 7, 8, 13, 28) for k in (1, 2, 3, 5) for st in (1, 2, 3) if k <= s]
    same = [(s, k, st) for s in (1, 5, 7, 8, 13, 14, 28) for k in (1, 2, 3, 5) for st in (1, 2, 3, 4)]
    return _run("Exercise 5.1 (conv_output_size)", fn, [
        ("the article's layers: 28, 5x5 SAME, then 2x2 pooling SAME",
         cases("SAME", [(28, 5, 1), (28, 2, 2), (14, 5, 1), (14, 2, 2)])),
        ("VALID, strides 1 to 3", cases("VALID", valid)),
        ("SAME, strides 1 to 4, odd sizes included", cases("SAME", same)),
        ("a kernel as large as the input", cases("VALID", [(5, 5, 1), (28, 28, 2)])),
    ])


# ---- chapter 6 -------------------------------------------------------------------------------


def check_conv2d_valid(fn: Any) -> Verdict:
    """Exercise 6.1: ``conv2d_valid(image, kernel)``: one 2-D image, one 2-D kernel, no padding."""
    rng = np.random.default_rng(6)

    def case(h, w, k_h, k_w):
        def run(f):
            image, kernel = rng.normal(size=(h, w)), rng.normal(size=(k_h, k_w))
            got = _array(_call(f, image, kernel), "conv2d_valid(image, kernel)")
            want = conv2d_numpy(image[None, :, :, None], kernel[:, :, None, None], 1, "VALID")[0, :, :, 0]
            flipped = conv2d_numpy(image[None, :, :, None], kernel[::-1, ::-1, None, None], 1, "VALID")[0, :, :, 0]
            same = conv2d_numpy(image[None, :, :, None], kernel[:, :, None, None], 1, "SAME")[0, :, :, 0]
            if got.shape == same.shape and got.shape != want.shape:
                raise Wrong("the output keeps the input size, as with SAME padding; without padding "
                            f"it is (H - KH + 1, W - KW + 1) = {want.shape}")
            if got.shape in ((want.shape[0] - 1, want.shape[1] - 1), (want.shape[0] + 1, want.shape[1] + 1)):
                raise Wrong(f"off by one: a {k_h}x{k_w} kernel fits in H - KH + 1 positions, "
                            f"so the output is {want.shape}")
            _same(got, want, "the output", hints=[
                (flipped, "your kernel is flipped: deep learning's convolution multiplies "
                 "image[i + a, j + b] by kernel[a, b], without turning the kernel round"),
            ])
        return run

    return _run("Exercise 6.1 (conv2d_valid)", fn, [
        ("a 5x5 image and a 3x3 kernel", case(5, 5, 3, 3)),
        ("a 28x28 digit and a 5x5 kernel", case(28, 28, 5, 5)),
        ("a non-square image and kernel", case(7, 9, 2, 4)),
        ("a kernel as large as the image", case(4, 4, 4, 4)),
    ])


# ---- chapter 7 -------------------------------------------------------------------------------


def check_max_pool_2x2(fn: Any) -> Verdict:
    """Exercise 7.1: ``max_pool_2x2(m)``: 2x2 windows, stride 2, on a 2-D map of even size."""
    rng = np.random.default_rng(7)

    def case(h, w):
        def run(f):
            m = rng.normal(size=(h, w))
            got = _array(_call(f, m), "max_pool_2x2(m)")
            want = pool2d_numpy(m[None, :, :, None], 2, 2, "VALID", "max")[0, :, :, 0]
            average = pool2d_numpy(m[None, :, :, None], 2, 2, "VALID", "avg")[0, :, :, 0]
            overlapping = pool2d_numpy(m[None, :, :, None], 2, 1, "VALID", "max")[0, :, :, 0]
            if got.shape == overlapping.shape and got.shape != want.shape:
                raise Wrong("the windows overlap: move them by 2 (stride 2), so the map halves")
            _same(got, want, "the pooled map", hints=[
                (average, "that is average pooling: keep the largest value of each window"),
                (want.T, "rows and columns are swapped"),
            ])
        return run

    def all_negative(f):
        m = -1.0 - np.arange(16.0).reshape(4, 4)
        got = _array(_call(f, m), "max_pool_2x2(m)")
        want = m.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).max(axis=(2, 3))
        if got.shape == want.shape and np.all(got == 0):
            raise Wrong("a maximum started at 0 hides negative values: start from the window itself")
        _same(got, want, "the pooled map")

    return _run("Exercise 7.1 (max_pool_2x2)", fn, [
        ("a 4x4 map", case(4, 4)),
        ("a 28x28 map gives 14x14", case(28, 28)),
        ("a non-square 6x10 map", case(6, 10)),
        ("all values negative (no zero sneaks in)", all_negative),
    ])


# ---- chapter 8 -------------------------------------------------------------------------------


def check_dropout(fn: Any) -> Verdict:
    """Exercise 8.1: ``dropout(x, rate, rng)``: inverted dropout with NumPy's generator ``rng``."""
    def statistics(rate):
        def run(f):
            # Values that are neither 0 nor all alike, so a mask that forgets x cannot pass.
            x = np.random.default_rng(80).uniform(0.5, 2.0, 200_000).astype(np.float32)
            got = _array(_call(f, x.copy(), rate, np.random.default_rng(8)), "dropout(x, rate, rng)")
            if got.shape != x.shape:
                raise Wrong(f"keep the input's shape {x.shape}, got {got.shape}")
            dropped = float(np.mean(got == 0))
            if abs(dropped - (1 - rate)) < 0.01 and abs(rate - 0.5) > 0.05:
                raise Wrong(f"you dropped {dropped:.0%}: `rate` is the share to *drop*, not to keep")
            if abs(dropped - rate) > 0.01:
                raise Wrong(f"about {rate:.0%} of the values should be 0, got {dropped:.1%}")
            kept, x_kept = got[got != 0], x.astype(np.float64)[got != 0]
            if np.allclose(kept, 1 / (1 - rate), rtol=1e-5):
                raise Wrong("every kept value is 1 / (1 - rate): multiply x itself by the mask "
                            "and the scale, x * keep / (1 - rate)")
            if np.allclose(kept, x_kept, rtol=1e-5):
                raise Wrong("the kept values must be scaled by 1 / (1 - rate), or the layer's "
                            "average output shrinks while training")
            if np.allclose(kept, x_kept * (1 - rate), rtol=1e-5):
                raise Wrong("the kept values are multiplied by (1 - rate): divide by it instead")
            if not np.allclose(kept, x_kept / (1 - rate), rtol=1e-5):
                raise Wrong(f"a kept value should be x / (1 - rate) = x * {1 / (1 - rate):.4g}, got "
                            f"x * {np.median(kept / x_kept):.4g}")
        return run

    def rate_zero(f):
        x = np.arange(6.0)
        _same(_array(_call(f, x, 0.0, np.random.default_rng(0)), "dropout(x, 0.0, rng)"), x,
              "with rate 0 the output")

    def uses_rng(f):
        x = np.random.default_rng(81).normal(size=1000)
        a = _array(_call(f, x.copy(), 0.5, np.random.default_rng(1)), "dropout")
        b = _array(_call(f, x.copy(), 0.5, np.random.default_rng(1)), "dropout")
        if not np.array_equal(a, b):
            raise Wrong("use the generator you are given (rng.random(...)), so a seed repeats")

    return _run("Exercise 8.1 (dropout)", fn, [
        ("the article's rate 0.2", statistics(0.2)),
        ("rate 0.5", statistics(0.5)),
        ("rate 0 changes nothing", rate_zero),
        ("the same seed gives the same mask", uses_rng),
    ])


# ---- chapter 9 -------------------------------------------------------------------------------


def check_stable_softmax(fn: Any) -> Verdict:
    """Exercise 9.1: ``stable_softmax(z)`` for a vector or a batch of rows (softmax per row)."""
    import tensorflow as tf

    def case(z, what):
        def run(f):
            z_arr = np.asarray(z, dtype=np.float64)
            with np.errstate(all="ignore"):
                got = _array(_call(f, z_arr.copy()), "stable_softmax(z)")
            want = tf.nn.softmax(tf.constant(z_arr), axis=-1).numpy()  # TensorFlow's, not ours
            if got.shape == want.shape and not np.all(np.isfinite(got)):
                with np.errstate(all="ignore"):
                    centred = z_arr - z_arr.mean(axis=-1, keepdims=True)
                    by_mean = np.exp(centred) / np.exp(centred).sum(-1, keepdims=True)
                    mean_nan = not np.all(np.isfinite(by_mean))
                    global_max = np.exp(z_arr - z_arr.max())
                    global_nan = not np.all(np.isfinite(global_max / global_max.sum(-1, keepdims=True)))
                if z_arr.ndim == 2 and global_nan and not mean_nan:
                    raise Wrong(f"{what} gave nan: subtract each row's own largest logit "
                                "(z.max(axis=-1, keepdims=True)), not the largest of the whole batch")
                raise Wrong(f"{what} gave nan or inf: subtract the largest logit (the max, not the "
                            "mean or the first) before exp")
            if z_arr.ndim == 2 and got.shape == want.shape:
                whole = np.exp(z_arr - z_arr.max()) / np.exp(z_arr - z_arr.max()).sum()
                if np.allclose(got, whole):
                    raise Wrong("normalise each row on its own (sum over axis=-1, keepdims=True)")
            _same(got, want, what)
        return run

    return _run("Exercise 9.1 (stable_softmax)", fn, [
        ("small logits", case([1.0, 2.0, 3.0], "softmax([1, 2, 3])")),
        ("huge logits do not overflow", case([1000.0, 999.0, 0.0], "softmax([1000, 999, 0])")),
        ("very negative logits", case([-1000.0, -1001.0], "softmax([-1000, -1001])")),
        ("logits far apart (subtracting the mean is not enough)",
         case([2000.0, 0.0, 0.0], "softmax([2000, 0, 0])")),
        ("a batch: one softmax per row", case([[1.0, 2.0, 3.0], [0.0, 0.0, 10.0]], "the batch")),
        ("a batch whose rows are far apart",
         case([[0.0, 1.0, 10.0], [-2000.0, -2001.0, -1990.0]], "the far-apart batch")),
    ])


# ---- chapter 10 ------------------------------------------------------------------------------


def _keras_adam_weights(w0: np.ndarray, grads: list[np.ndarray], lr: float) -> list[np.ndarray]:
    """The weights after each step of ``keras.optimizers.Adam`` (epsilon 1e-7) on ``grads``."""
    import keras
    import tensorflow as tf

    var = tf.Variable(w0, dtype=tf.float64)
    opt = keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    out = []
    for g in grads:
        opt.apply_gradients([(tf.constant(g, tf.float64), var)])
        out.append(var.numpy().copy())
    return out


def check_adam_step(fn: Any) -> Verdict:
    """Exercise 10.1: ``adam_step(w, g, m, v, t, lr)`` returns the new ``(w, m, v)``, as Keras's Adam."""
    rng = np.random.default_rng(10)

    def unpack(result, what):
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise Wrong(f"{what} should return three things, (w, m, v), got "
                        f"{type(result).__name__}" + (f" of length {len(result)}"
                                                      if isinstance(result, (tuple, list)) else ""))
        return [_array(r, what) for r in result]

    def steps(shape, lr, n_steps, scale=1.0):
        def run(f):
            w0 = rng.normal(size=shape)
            grads = [scale * rng.normal(size=shape) for _ in range(n_steps)]
            want_w = _keras_adam_weights(w0, grads, lr)  # the oracle: Keras itself
            w, m, v = w0.copy(), np.zeros(shape), np.zeros(shape)
            for t, g in enumerate(grads, start=1):
                new_w, new_m, new_v = unpack(_call(f, w.copy(), g.copy(), m.copy(), v.copy(), t, lr),
                                             f"adam_step(...) at step {t}")
                # m and v are moving averages, by definition; hints for the usual slips
                want_m, want_v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                _same(new_m, want_m, f"m after step {t}", hints=[
                    (want_m / (1 - 0.9 ** t), "return the raw moving average m, not the "
                     "bias-corrected m / (1 - beta1**t): the correction is used only for the step"),
                    (0.1 * m + 0.9 * g, "the weights are swapped: m = beta1 * m + (1 - beta1) * g"),
                ])
                _same(new_v, want_v, f"v after step {t}", hints=[
                    (0.999 * v + 0.001 * g, "v averages the *squared* gradient: (1 - beta2) * g**2"),
                    (want_v / (1 - 0.999 ** t), "return the raw moving average v, not the "
                     "bias-corrected v / (1 - beta2**t)"),
                ])
                plain = w - lr * want_m / (np.sqrt(want_v) + 1e-7)
                alpha = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
                m_hat, v_hat = want_m / (1 - 0.9 ** t), want_v / (1 - 0.999 ** t)
                _same(new_w, want_w[t - 1], f"w after step {t}", tol=1e-6, hints=[
                    (plain, "no bias correction: divide m by (1 - beta1**t) and v by "
                     "(1 - beta2**t), or the first steps are far too small"),
                    (2 * w - want_w[t - 1], "that climbs the loss: subtract the step"),
                    (w - lr * m_hat / (np.sqrt(v_hat) + 1e-7), "epsilon is added to sqrt(v_hat) "
                     "(the paper's form); this exercise checks Keras's form, which adds it to "
                     "sqrt(v) as Keras does: w - alpha * m / (sqrt(v) + eps), alpha = "
                     "lr * sqrt(1 - beta2**t) / (1 - beta1**t)"),
                    (w - alpha * want_m / np.sqrt(want_v + 1e-7), "epsilon goes outside the square "
                     "root: sqrt(v) + eps"),
                ])
                w, m, v = new_w, new_m, new_v
        return run

    def falls(f):
        w, m, v = np.array([3.0]), np.zeros(1), np.zeros(1)  # loss = w^2, gradient 2w
        for t in range(1, 301):
            w, m, v = unpack(_call(f, w, 2 * w, m, v, t, 0.05), "adam_step(...)")
        if not abs(w[0]) < 0.5:
            raise Wrong(f"300 steps on loss = w**2 from w = 3 should get close to 0, got w = {w[0]:.3g}")

    return _run("Exercise 10.1 (adam_step)", fn, [
        ("the first step on a vector (as large as lr, whatever the gradient)", steps((5,), 1e-3, 1)),
        ("five steps on a weight matrix", steps((3, 4), 1e-2, 5)),
        ("tiny gradients, where epsilon's place matters", steps((4,), 1e-3, 3, scale=1e-3)),
        ("300 steps make a loss fall", falls),
    ])


# ---- chapter 11 ------------------------------------------------------------------------------


def check_accuracy_from_logits(fn: Any) -> Verdict:
    """Formerly exercise 11.1 (now ``check_receptive_field``), not in ``CHECKERS``:
    ``accuracy_from_logits(logits, labels)``: share of rows whose largest logit is the label, a
    float in [0, 1]."""
    rng = np.random.default_rng(11)

    def case(n, wrong_share):
        def run(f):
            labels = rng.integers(0, 10, n)
            logits = rng.normal(size=(n, 10))
            logits[np.arange(n), labels] += 10
            flip = rng.random(n) < wrong_share
            logits[flip, (labels[flip] + 1) % 10] += 20
            got = _call(f, logits, labels)
            want = float(np.mean(logits.argmax(1) == labels))
            try:
                got_f = float(_array(got, "accuracy_from_logits(...)"))
            except TypeError:
                raise Wrong(f"return one number, got {type(got).__name__}") from None
            if math.isclose(got_f, 100 * want, rel_tol=1e-6) and want not in (0.0,):
                raise Wrong("return a share between 0 and 1, not a percentage")
            if math.isclose(got_f, float(np.sum(logits.argmax(1) == labels)), rel_tol=1e-6) and n > 1:
                raise Wrong("that is the number right: divide by the number of images")
            # float32 is fine: its mean of 0s and 1s is off by about 1e-7 at most
            if not math.isclose(got_f, want, abs_tol=1e-6):
                raise Wrong(f"expected {want:.4f}, got {got_f:.4f}")
        return run

    return _run("Exercise 11.1 (accuracy_from_logits)", fn, [
        ("all right", case(50, 0.0)),
        ("about a third wrong", case(300, 0.33)),
        ("one image", case(1, 0.0)),
    ])


def _patch_by_gradients(layers: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(size, spacing) after each layer, measured rather than computed: stack 1-D convolutions
    of ones with these windows and strides, and see which input pixels the gradients of two
    neighbouring output values reach (``tf.GradientTape``, not the formula). The convolutions
    are sums of strided slices: gradients through ``tf.nn.conv1d`` stacks that start with a
    1-wide, stride-2 layer once aborted the process here (malloc: invalid next size)."""
    import tensorflow as tf

    out = []
    for n in range(1, len(layers) + 1):
        prefix = layers[:n]
        reach = int(np.prod([s for _, s in prefix]))
        length = (sum(k for k, _ in prefix) + 4) * reach  # more than enough for two outputs
        x = tf.Variable(tf.ones([length]))
        with tf.GradientTape(persistent=True) as tape:
            y = x
            for window, stride in prefix:  # a VALID 1-D convolution with a kernel of ones
                n_out = (int(y.shape[0]) - window) // stride + 1
                y = tf.add_n([y[a:a + stride * (n_out - 1) + 1:stride] for a in range(window)])
            first, second = y[0], y[1]
        seen = [np.flatnonzero(tape.gradient(v, x).numpy()) for v in (first, second)]
        out.append((int(seen[0].max() - seen[0].min() + 1), int(seen[1].min() - seen[0].min())))
    return out


def check_receptive_field(fn: Any) -> Verdict:
    """Exercise 11.1: ``receptive_field(layers)``: ``(size, spacing)`` after each ``(window,
    stride)`` layer, checked against the input pixels that gradients actually reach."""
    def as_pairs(result, n_layers):
        if result is None:
            raise Wrong("receptive_field(...) returned None: did you forget `return`?")
        if isinstance(result, tuple) and len(result) == 2 and all(
                isinstance(a, (int, np.integer)) for a in result) and n_layers != 2:
            raise Wrong("return one (size, spacing) pair for *each* layer, a list, not only "
                        "the last pair")
        try:
            pairs = [tuple(int(a) for a in pair) for pair in result]
        except (TypeError, ValueError):
            raise Wrong("return a list of (size, spacing) pairs of whole numbers, got "
                        f"{result!r:.80}") from None
        if any(len(pair) != 2 for pair in pairs):
            raise Wrong("each item is a pair: (size, spacing)")
        return pairs

    def case(layers):
        def run(f):
            got = as_pairs(_call(f, list(layers)), len(layers))
            want = _patch_by_gradients(list(layers))
            if len(got) != len(want):
                raise Wrong(f"{len(layers)} layers, so {len(want)} pairs, one after each layer; "
                            f"got {len(got)}")
            if got == want:
                return
            first = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
            slips = {"sizes": [], "late": [], "zero": []}  # the usual slips, replayed, to name it
            for slip in slips:
                size, spacing = (0 if slip == "zero" else 1), 1
                for window, stride in layers:
                    if slip == "sizes":
                        size += window - 1
                    elif slip == "late":
                        spacing *= stride
                        size += (window - 1) * spacing
                        slips[slip].append((size, spacing))
                        continue
                    else:
                        size += (window - 1) * spacing
                    spacing *= stride
                    slips[slip].append((size, spacing))
            where = f"after layer {first + 1} of {list(layers)}: expected {want[first]}, got {got[first]}"
            if got == slips["sizes"]:
                raise Wrong(f"{where}. The window's values are `spacing` input pixels apart, so "
                            "a layer adds (window - 1) * spacing pixels, not window - 1")
            if got == slips["late"]:
                raise Wrong(f"{where}. Grow the size with the spacing from *before* this "
                            "layer, then multiply the spacing by its stride")
            if got == slips["zero"]:
                raise Wrong(f"{where}. Start from one pixel (size 1), which sees itself")
            if [s for _, s in got] != [s for _, s in want]:
                raise Wrong(f"{where}. The spacing is the product of the strides so far")
            raise Wrong(where)
        return run

    def no_layers(f):
        if as_pairs(_call(f, []), 0) != []:
            raise Wrong("with no layers there is nothing to report: return []")

    rng = np.random.default_rng(11)
    stacks = [[(int(k), int(s)) for k, s in zip(rng.integers(1, 6, 4), rng.integers(1, 4, 4))]
              for _ in range(3)]
    return _run("Exercise 11.1 (receptive_field)", fn, [
        ("the article's network: conv 5, pool 2, conv 5, pool 2",
         case([(5, 1), (2, 2), (5, 1), (2, 2)])),
        ("one layer", case([(3, 1)])),
        ("strided 3x3 convolutions", case([(3, 2), (3, 2), (3, 2)])),
        ("a 1x1 layer and a stride-3 layer", case([(1, 1), (4, 3), (3, 1), (2, 2)])),
        ("three random stacks", lambda f: [case(layers)(f) for layers in stacks]),
        ("no layers at all gives an empty list", no_layers),
    ])


#: Every checker, by exercise number (the student edition and the tests use this list).
CHECKERS: dict[str, Callable[[Any], Verdict]] = {
    "1.1": check_numerical_gradient, "2.1": check_xent_grad, "3.1": check_steps_per_epoch,
    "4.1": check_conv_params, "5.1": check_conv_output_size, "6.1": check_conv2d_valid,
    "7.1": check_max_pool_2x2, "8.1": check_dropout, "9.1": check_stable_softmax,
    "10.1": check_adam_step, "11.1": check_receptive_field,
}
