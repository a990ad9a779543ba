"""mnist_lessons.exercises: every checker accepts the reference solution and rejects realistic
wrong answers with the right hint, and nothing a student passes in can make it raise."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons import exercises as ex


def _verdict(checker, answer, capsys):
    verdict = checker(answer)
    return verdict, capsys.readouterr().out


def assert_accepts(checker, answer, capsys):
    verdict, out = _verdict(checker, answer, capsys)
    assert verdict.passed, out
    assert "all" in out and "checks passed" in out


def assert_rejects(checker, answer, hint, capsys):
    verdict, out = _verdict(checker, answer, capsys)
    assert not verdict.passed
    assert hint in out, out


# ---- reference solutions (the notebooks' solution cells hold the same code) ------------------

def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x, dtype=float)
    for i in range(x.size):
        nudged = x.copy()
        nudged[i] += h
        up = f(nudged)
        nudged[i] -= 2 * h
        grad[i] = (up - f(nudged)) / (2 * h)
    return grad


def numerical_gradient_in_place(f, x, h=1e-5):
    """Nudges x itself, but puts every element back: x is unchanged afterwards."""
    grad = []
    for i in range(len(x)):
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        grad.append((up - down) / (2 * h))
    return grad


def numerical_gradient_nudging_x(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for i in range(x.size):
        x[i] += h
        up = f(x)
        x[i] -= 2 * h
        grad[i] = (up - f(x)) / (2 * h)
    return grad


def xent_grad(logits, labels):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)  # softmax of each row
    y = np.zeros_like(p)
    y[np.arange(len(labels)), labels] = 1.0  # one-hot labels
    return (p - y) / len(labels)


def steps_per_epoch(n_images, batch_size, drop_last):
    return n_images // batch_size if drop_last else -(-n_images // batch_size)


def conv_params(kh, kw, c_in, c_out):
    return kh * kw * c_in * c_out + c_out


def conv_output_size(size, kernel, stride, padding):
    if padding == "SAME":
        return -(-size // stride)  # ceil(size / stride): the kernel size drops out
    return (size - kernel) // stride + 1


def conv2d_valid(image, kernel):
    kh, kw = kernel.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i:i + kh, j:j + kw] * kernel)
    return out


def max_pool_2x2(m):
    h, w = m.shape
    return m.reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))


def dropout(x, rate, rng):
    keep = rng.random(x.shape) >= rate
    return np.where(keep, x / (1 - rate), 0.0)


def stable_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def adam_step(w, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    alpha = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    w = w - alpha * m / (np.sqrt(v) + eps)
    return w, m, v


def adam_step_textbook(w, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7):
    """The paper's form: epsilon added to sqrt(v_hat), not to sqrt(v) as Keras does."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def accuracy_from_logits(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def receptive_field(layers):
    size, spacing, out = 1, 1, []
    for window, stride in layers:
        size += (window - 1) * spacing
        spacing *= stride
        out.append((size, spacing))
    return out


def receptive_field_backwards(layers):
    """Written the other way round: walk back from one output value to the input."""
    out = []
    for n in range(1, len(layers) + 1):
        size, spacing = 1, 1  # in units of the map after layer n
        for window, stride in reversed(layers[:n]):
            size = (size - 1) * stride + window
            spacing *= stride
        out.append([np.int64(size), np.int64(spacing)])
    return out


#: The book's checkers, and the accuracy checker, which 11.1 used before it became receptive_field.
CHECKS = {**ex.CHECKERS, "accuracy": ex.check_accuracy_from_logits}


def _order(number):
    return tuple(map(int, number.split("."))) if number[0].isdigit() else (99,)


REFERENCE = {
    "1.1": numerical_gradient, "2.1": xent_grad, "3.1": steps_per_epoch, "4.1": conv_params,
    "5.1": conv_output_size, "6.1": conv2d_valid, "7.1": max_pool_2x2, "8.1": dropout,
    "9.1": stable_softmax, "10.1": adam_step, "11.1": receptive_field,
    "accuracy": accuracy_from_logits,
}


# ---- correct answers written differently: NumPy and TF, float32 and float64 ------------------

def adam_step_tf32(w, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7):
    """Keras's own arrangement, in float32 TensorFlow."""
    w, g, m, v = (tf.cast(a, tf.float32) for a in (w, g, m, v))
    m = m + (g - m) * (1 - beta1)
    v = v + (tf.square(g) - v) * (1 - beta2)
    alpha = lr * tf.sqrt(1 - beta2**t) / (1 - beta1**t)
    return w - alpha * m / (tf.sqrt(v) + eps), m, v


ALTERNATIVES = [
    ("1.1", numerical_gradient_in_place),
    ("1.1", lambda f, x, h: np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(len(x))])),
    ("2.1", lambda z, y: (tf.nn.softmax(tf.cast(z, tf.float32)) - tf.one_hot(y, 10)) / len(y)),
    ("3.1", lambda n, b, d: n // b if d else math.ceil(n / b)),
    ("4.1", lambda kh, kw, ci, co: (kh * kw * ci + 1) * co),
    ("5.1", lambda s, k, st, p: math.ceil(s / st) if p == "SAME" else math.ceil((s - k + 1) / st)),
    ("6.1", lambda im, k: tf.nn.conv2d(tf.constant(im[None, :, :, None], tf.float32),
                                       tf.constant(k[:, :, None, None], tf.float32), 1, "VALID")[0, :, :, 0]),
    ("7.1", lambda m: tf.nn.max_pool2d(tf.constant(m[None, :, :, None], tf.float32), 2, 2, "VALID")[0, :, :, 0]),
    ("8.1", lambda x, r, rng: tf.where(rng.random(x.shape) >= r, x / (1 - r), tf.zeros_like(x))),
    ("8.1", lambda x, r, rng: (rng.random(x.shape) >= r).astype(np.float32) * x.astype(np.float32) / np.float32(1 - r)),
    ("9.1", lambda z: tf.exp(z - tf.reduce_logsumexp(z, axis=-1, keepdims=True))),
    ("9.1", lambda z: stable_softmax(np.asarray(z, np.float32))),
    ("10.1", adam_step_tf32),
    ("11.1", receptive_field_backwards),
    ("accuracy", lambda z, y: tf.reduce_mean(tf.cast(tf.equal(tf.argmax(z, 1), y), tf.float32))),  # the article's line
    ("accuracy", lambda z, y: np.count_nonzero(np.argmax(z, axis=-1) == y) / len(y)),
]


@pytest.mark.parametrize("number, answer", ALTERNATIVES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(ALTERNATIVES)])
def test_checkers_accept_correct_answers_written_differently(number, answer, capsys):
    assert_accepts(CHECKS[number], answer, capsys)


def test_each_checker_accepts_at_least_two_differently_written_answers():
    counts = {n: 1 + sum(1 for m, _ in ALTERNATIVES if m == n) for n in CHECKS}
    assert all(c >= 2 for c in counts.values()), counts


# ---- realistic wrong answers ------------------------------------------------------------------

def softmax_minus_mean(z):
    e = np.exp(z - z.mean(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def receptive_field_adding_windows(layers):
    size, spacing, out = 1, 1, []
    for window, stride in layers:
        size += window - 1
        spacing *= stride
        out.append((size, spacing))
    return out


def receptive_field_late_spacing(layers):
    size, spacing, out = 1, 1, []
    for window, stride in layers:
        spacing *= stride
        size += (window - 1) * spacing
        out.append((size, spacing))
    return out


def adam_step_no_correction(w, g, m, v, t, lr=1e-3):
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    return w - lr * m / (np.sqrt(v) + 1e-7), m, v


@pytest.mark.parametrize("number", sorted(CHECKS, key=_order))
def test_every_checker_accepts_its_reference_solution(number, capsys):
    assert_accepts(CHECKS[number], REFERENCE[number], capsys)


WRONG_ANSWERS = [
    ("1.1", lambda f, x, h: numerical_gradient(f, x, h) * 2, "divide by 2 * h"),
    ("1.1", lambda f, x, h: -numerical_gradient(f, x, h), "the sign is flipped"),
    ("1.1", lambda f, x, h: np.array([(f(x + h * e) - f(x)) / h for e in np.eye(len(x))]), "one-sided difference"),
    ("1.1", numerical_gradient_nudging_x, "x was changed"),
    ("1.1", lambda f, x, h: (f(x + h) - f(x - h)) / (2 * h), "one partial derivative per element"),
    ("2.1", lambda z, y: xent_grad(z, y) * len(y), "divide by the number of images N"),
    ("2.1", lambda z, y: -xent_grad(z, y), "the sign is flipped"),
    ("2.1", lambda z, y: (np.exp(z) / np.exp(z).sum(axis=0) - np.eye(10)[y]) / len(y), "along each row"),
    ("2.1", lambda z, y: (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True) - np.eye(10)[y]) / len(y), "nan or inf"),
    ("2.1", lambda z, y: xent_grad(z, y) + (np.eye(10)[y] - y[:, None]) / len(y), "not the digit"),
    ("2.1", lambda z, y: xent_grad(z, y) + np.eye(10)[y] / len(y), "subtract the one-hot labels"),
    ("3.1", lambda n, b, d: n // b, "round up"),
    ("3.1", lambda n, b, d: n / b, "whole number of steps"),
    ("4.1", lambda kh, kw, ci, co: kh * kw * ci * co, "add one bias per filter"),
    ("4.1", lambda kh, kw, ci, co: kh * kw * co + co, "multiply by c_in too"),
    ("4.1", lambda kh, kw, ci, co: kh * kw * ci * co + ci, "one bias per *output* channel"),
    ("5.1", lambda s, k, st, p: -(-s // st) if p == "SAME" else (s - k) // st, "the first window counts too"),
    ("5.1", lambda s, k, st, p: s // st if p == "SAME" else (s - k) // st + 1, "round up, not down"),
    ("5.1", lambda s, k, st, p: s if p == "SAME" else (s - k) // st + 1, "SAME keeps the size only with stride 1"),
    ("5.1", lambda s, k, st, p: (s - k) // st + 1, "that is VALID's formula"),
    ("5.1", lambda s, k, st, p: -(-s // st) if p == "SAME" else (s - k) / st + 1, "return an int, not a float"),
    ("6.1", lambda im, k: conv2d_valid(im, k[::-1, ::-1]), "kernel is flipped"),
    ("6.1", lambda im, k: np.pad(conv2d_valid(im, k), ((0, 1), (0, 1))), "off by one"),
    ("7.1", lambda m: m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).mean(axis=(1, 3)), "average pooling"),
    ("7.1", lambda m: np.lib.stride_tricks.sliding_window_view(m, (2, 2)).max(axis=(2, 3)), "windows overlap"),
    ("7.1", lambda m: np.maximum(max_pool_2x2(m), 0), "a maximum started at 0"),
    ("8.1", lambda x, r, rng: np.where(rng.random(x.shape) >= r, x, 0.0), "scaled by 1 / (1 - rate)"),
    ("8.1", lambda x, r, rng: np.where(rng.random(x.shape) >= r, 1 / (1 - r), 0.0), "multiply x itself"),
    ("8.1", lambda x, r, rng: np.where(rng.random(x.shape) >= r, x * (1 - r), 0.0), "divide by it instead"),
    ("8.1", lambda x, r, rng: np.where(rng.random(x.shape) < r, x / r if r else x, 0.0), "share to *drop*"),
    ("8.1", lambda x, r, rng: np.where(np.random.default_rng().random(x.shape) >= r, x / (1 - r), 0.0),
     "use the generator you are given"),
    ("9.1", lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True), "subtract the largest logit"),
    ("9.1", lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum(), "normalise each row"),
    ("9.1", lambda z: softmax_minus_mean(z), "the max, not the mean"),
    ("9.1", lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum(axis=-1, keepdims=True), "each row's own largest"),
    ("10.1", adam_step_no_correction, "no bias correction"),
    ("10.1", lambda w, g, m, v, t, lr: (w, 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g), "*squared* gradient"),
    ("10.1", lambda w, g, m, v, t, lr: (adam_step(w, g, m, v, t, lr)[0], (0.9 * m + 0.1 * g) / (1 - 0.9**t),
                                        adam_step(w, g, m, v, t, lr)[2]), "not the bias-corrected"),
    ("10.1", adam_step_textbook, "as Keras does"),
    ("10.1", lambda w, g, m, v, t, lr: (2 * w - adam_step(w, g, m, v, t, lr)[0], *adam_step(w, g, m, v, t, lr)[1:]),
     "climbs the loss"),
    ("10.1", lambda w, g, m, v, t, lr: adam_step(w, g, m, v, t, lr)[0], "should return three things"),
    ("accuracy", lambda z, y: 100 * float(np.mean(z.argmax(1) == y)), "not a percentage"),
    ("accuracy", lambda z, y: int(np.sum(z.argmax(1) == y)), "divide by the number of images"),
    ("accuracy", lambda z, y: np.argmax(z, axis=1) == y, "return one number"),
    ("11.1", receptive_field_adding_windows, "(window - 1) * spacing pixels"),
    ("11.1", receptive_field_late_spacing, "spacing from *before* this layer"),
    ("11.1", lambda layers: [(s - 1, sp) for s, sp in receptive_field(layers)], "Start from one pixel"),
    ("11.1", lambda layers: receptive_field(layers)[-1] if layers else [], "for *each* layer"),
    ("11.1", lambda layers: [(s, 1) for s, _ in receptive_field(layers)], "product of the strides"),
]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("number, answer, hint", WRONG_ANSWERS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG_ANSWERS)])
def test_checkers_reject_realistic_mistakes_with_the_right_hint(number, answer, hint, capsys):
    assert_rejects(CHECKS[number], answer, hint, capsys)


def test_each_checker_has_at_least_two_wrong_answers():
    counts = {n: sum(1 for m, _, _ in WRONG_ANSWERS if m == n) for n in CHECKS}
    assert all(c >= 2 for c in counts.values()), counts


@pytest.mark.parametrize("number", sorted(CHECKS))
@pytest.mark.parametrize("answer, hint", [
    (None, "the answer is None"),
    (42, "expected a function, got a int"),
    ("conv2d", "expected a function, got a str"),
])
def test_checkers_survive_answers_of_the_wrong_type(number, answer, hint, capsys):
    assert_rejects(CHECKS[number], answer, hint, capsys)


def test_a_stub_that_raises_not_implemented_says_not_done(capsys):
    def stub(*args):
        raise NotImplementedError

    verdict, out = _verdict(ex.check_conv2d_valid, stub, capsys)
    assert not verdict and "not done yet" in out
    assert out.count("✗") == 1, "stop at the first case: one message is enough"


def test_a_function_that_crashes_or_returns_nothing_is_reported(capsys):
    assert_rejects(ex.check_stable_softmax, lambda z: z["x"], "your code raised IndexError", capsys)
    assert_rejects(ex.check_stable_softmax, lambda z: None, "did you forget `return`", capsys)


def test_an_answer_that_calls_sys_exit_is_reported_not_raised(capsys):
    import sys

    verdict, out = _verdict(ex.check_steps_per_epoch, lambda *a: sys.exit(3), capsys)
    assert not verdict and "called exit() or sys.exit()" in out and "return the value" in out


def test_a_slow_function_times_out_with_a_message_and_is_called_once(monkeypatch, capsys):
    """A call that runs past the limit keeps running in its thread; the check stops there (one
    wait and one stuck call for an endless loop, not one per case)."""
    monkeypatch.setattr(ex, "TIME_LIMIT_S", 0.2)
    calls = []

    def slow(*args):
        calls.append(args)
        time.sleep(1)

    verdict, out = _verdict(ex.check_conv_params, slow, capsys)
    assert not verdict.passed and "took longer than" in out
    assert len(calls) == 1 and out.count("✗") == 1


def test_verdict_is_truthy_only_when_everything_passed(capsys):
    assert bool(ex.check_conv_params(conv_params)) is True
    assert bool(ex.check_conv_params(lambda *a: 0)) is False
    assert repr(ex.check_conv_params(conv_params)) == "Verdict('Exercise 4.1 (conv_params)', passed=True)"
