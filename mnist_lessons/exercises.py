"""Automatic checks for the chapters' coding exercises.

Each ``check_*`` function takes the student's answer (usually a function), runs it on cases of
its own, edge cases the exercise text does not show included, and prints a verdict: what passed,
and for a wrong answer a hint about what is off. It never raises: a wrong type, ``None``, a
function that raises or runs too long all get a clear message, so a checker cannot crash the
notebook. The verdict is also returned (truthy when everything passed) for scripts and tests.
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


def check_square_sum(fn: Any) -> Verdict:
    """Exercise 1.1: ``square_sum(x)``, a ``tf.function`` returning the sum of the squares of x."""
    import tensorflow as tf

    def case(x):
        def run(f):
            got = _array(_call(f, tf.constant(x, tf.float32)), "square_sum(x)")
            want = float(np.sum(np.square(x)))
            if got.shape != ():
                raise Wrong(f"return one number (a scalar tensor), got shape {got.shape}: sum all of it")
            if math.isclose(float(got), float(np.sum(x)), rel_tol=1e-5) and not math.isclose(want, float(np.sum(x))):
                raise Wrong("that is the plain sum: square each element first (x * x or tf.square)")
            if not math.isclose(float(got), want, rel_tol=1e-5, abs_tol=1e-5):
                raise Wrong(f"for {np.asarray(x).tolist()} expected {want:g}, got {float(got):g}")
        return run

    def is_tf_function(f):
        if not hasattr(f, "get_concrete_function"):
            raise Wrong("decorate the function with @tf.function so TensorFlow builds a graph")

    return _run("Exercise 1.1 (square_sum)", fn, [
        ("decorated with @tf.function", is_tf_function),
        ("[1, 2, 3] gives 14", case([1.0, 2.0, 3.0])),
        ("negative numbers", case([-2.0, 0.5])),
        ("a 2-D tensor", case([[1.0, 2.0], [3.0, 4.0]])),
        ("an empty tensor gives 0", case(np.zeros(0, np.float32))),
    ])


# ---- chapter 2 -------------------------------------------------------------------------------


def check_count_digits(fn: Any) -> Verdict:
    """Exercise 2.1: ``count_digits(labels)`` returns 10 counts, one per digit, zeros included."""
    def case(labels):
        def run(f):
            got = _array(_call(f, np.asarray(labels, dtype=np.uint8)), "count_digits(labels)")
            want = np.bincount(np.asarray(labels, dtype=np.int64), minlength=10).astype(float)
            if got.shape == (len(np.unique(labels)),) and got.shape != (10,):
                raise Wrong("return 10 counts, one for every digit, even those with no image (0)")
            _same(got, want, "the counts")
        return run

    return _run("Exercise 2.1 (count_digits)", fn, [
        ("labels 5 0 4 1 9 2 1", case([5, 0, 4, 1, 9, 2, 1])),
        ("a digit that never appears counts 0", case([3, 3, 7])),
        ("no labels at all", case(np.zeros(0, np.uint8))),
        ("10,000 labels", case(np.random.default_rng(0).integers(0, 10, 10_000))),
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


def check_flat_to_nhwc(fn: Any) -> Verdict:
    """Exercise 5.1: ``flat_to_nhwc(x)``: (N, 784) rows -> (N, 28, 28, 1) images."""
    rng = np.random.default_rng(5)

    def case(n):
        def run(f):
            x = rng.random((n, 784)).astype(np.float32)
            got = _array(_call(f, x), "flat_to_nhwc(x)")
            want = x.reshape(n, 28, 28, 1)
            _same(got, want, "the images", hints=[
                (want.transpose(0, 2, 1, 3), "rows and columns are swapped: the 784 numbers are "
                 "stored row by row, so reshape to (N, 28, 28, 1) without transposing"),
            ])
        return run

    def channels_last(f):
        got = _array(_call(f, np.zeros((2, 784), np.float32)), "flat_to_nhwc(x)")
        if got.shape == (2, 1, 28, 28):
            raise Wrong("that is NCHW (channels first); TensorFlow's convolutions want NHWC: "
                        "(N, 28, 28, 1)")
        if got.shape != (2, 28, 28, 1):
            raise Wrong(f"expected shape (2, 28, 28, 1), got {got.shape}")

    return _run("Exercise 5.1 (flat_to_nhwc)", fn, [
        ("channels last (NHWC)", channels_last),
        ("a batch of 3 keeps every pixel in place", case(3)),
        ("a batch of 1", case(1)),
        ("a batch of 257 (use -1, not a fixed batch size)", case(257)),
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
            x = np.ones(200_000)
            got = _array(_call(f, x, rate, np.random.default_rng(8)), "dropout(x, rate, rng)")
            if got.shape != x.shape:
                raise Wrong(f"keep the input's shape {x.shape}, got {got.shape}")
            dropped = float(np.mean(got == 0))
            if abs(dropped - (1 - rate)) < 0.01 and abs(rate - 0.5) > 0.05:
                raise Wrong(f"you dropped {dropped:.0%}: `rate` is the share to *drop*, not to keep")
            if abs(dropped - rate) > 0.01:
                raise Wrong(f"about {rate:.0%} of the values should be 0, got {dropped:.1%}")
            kept = np.unique(got[got != 0])
            if np.allclose(kept, 1.0):
                raise Wrong("the kept values must be scaled by 1 / (1 - rate), or the layer's "
                            "average output shrinks while training")
            if not np.allclose(kept, 1 / (1 - rate)):
                raise Wrong(f"kept values should be 1 / (1 - rate) = {1 / (1 - rate):.4g}, got "
                            f"{kept[:3]}")
        return run

    def rate_zero(f):
        x = np.arange(6.0)
        _same(_array(_call(f, x, 0.0, np.random.default_rng(0)), "dropout(x, 0.0, rng)"), x,
              "with rate 0 the output")

    def uses_rng(f):
        a = _array(_call(f, np.ones(1000), 0.5, np.random.default_rng(1)), "dropout")
        b = _array(_call(f, np.ones(1000), 0.5, np.random.default_rng(1)), "dropout")
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
    def case(z, what):
        def run(f):
            z_arr = np.asarray(z, dtype=np.float64)
            with np.errstate(all="ignore"):
                got = _array(_call(f, z_arr.copy()), "stable_softmax(z)")
            want = softmax_stable(z_arr)
            if got.shape == want.shape and not np.all(np.isfinite(got)):
                raise Wrong(f"{what} gave nan or inf: subtract the largest logit before exp")
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
        ("a batch: one softmax per row", case([[1.0, 2.0, 3.0], [0.0, 0.0, 10.0]], "the batch")),
    ])


# ---- chapter 10 ------------------------------------------------------------------------------


def check_sgd_step(fn: Any) -> Verdict:
    """Exercise 10.1: ``sgd_step(weights, gradient, learning_rate)`` returns the new weights."""
    rng = np.random.default_rng(10)

    def case(shape, lr):
        def run(f):
            w, g = rng.normal(size=shape), rng.normal(size=shape)
            got = _array(_call(f, w.copy(), g.copy(), lr), "sgd_step(...)")
            _same(got, w - lr * g, "the new weights", hints=[
                (w + lr * g, "that climbs the loss: step *against* the gradient (w - lr * g)"),
                (w - g, "the step ignores the learning rate: multiply the gradient by it"),
                (-lr * g, "return the new weights, not just the change"),
            ])
        return run

    def falls(f):
        w = np.array([3.0])  # loss = w^2, gradient 2w: ten steps must bring the loss down
        for _ in range(10):
            w = _array(_call(f, w, 2 * w, 0.1), "sgd_step(...)")
        if not w[0] ** 2 < 9.0 * 0.2:
            raise Wrong(f"ten steps on loss = w**2 from w = 3 should get close to 0, got w = {w[0]:.3g}")

    return _run("Exercise 10.1 (sgd_step)", fn, [
        ("one step on a vector", case((5,), 0.1)),
        ("a weight matrix", case((3, 4), 0.01)),
        ("ten steps make a loss fall", falls),
    ])


# ---- chapter 11 ------------------------------------------------------------------------------


def check_accuracy_from_logits(fn: Any) -> Verdict:
    """Exercise 11.1: ``accuracy_from_logits(logits, labels)``: share of rows whose largest logit
    is the label, a float in [0, 1]."""
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
            if not math.isclose(got_f, want, abs_tol=1e-9):
                raise Wrong(f"expected {want:.4f}, got {got_f:.4f}")
        return run

    return _run("Exercise 11.1 (accuracy_from_logits)", fn, [
        ("all right", case(50, 0.0)),
        ("about a third wrong", case(300, 0.33)),
        ("one image", case(1, 0.0)),
    ])


#: Every checker, by exercise number (the student edition and the tests use this list).
CHECKERS: dict[str, Callable[[Any], Verdict]] = {
    "1.1": check_square_sum, "2.1": check_count_digits, "3.1": check_steps_per_epoch,
    "4.1": check_conv_params, "5.1": check_flat_to_nhwc, "6.1": check_conv2d_valid,
    "7.1": check_max_pool_2x2, "8.1": check_dropout, "9.1": check_stable_softmax,
    "10.1": check_sgd_step, "11.1": check_accuracy_from_logits,
}
