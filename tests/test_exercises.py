"""mnist_lessons.exercises: every checker accepts the reference solution and rejects realistic
wrong answers with the right hint, and nothing a student passes in can make it raise."""

from __future__ import annotations

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

@tf.function
def square_sum(x):
    return tf.reduce_sum(x * x)


def square_sum_plain(x):
    return tf.reduce_sum(x * x)


@tf.function
def plain_sum(x):
    return tf.reduce_sum(x)


def count_digits(labels):
    return np.bincount(labels, minlength=10)


def steps_per_epoch(n_images, batch_size, drop_last):
    return n_images // batch_size if drop_last else -(-n_images // batch_size)


def conv_params(kh, kw, c_in, c_out):
    return kh * kw * c_in * c_out + c_out


def flat_to_nhwc(x):
    return tf.reshape(x, [-1, 28, 28, 1])


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


def sgd_step(weights, gradient, learning_rate):
    return weights - learning_rate * gradient


def accuracy_from_logits(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) == labels))


REFERENCE = {
    "1.1": square_sum, "2.1": count_digits, "3.1": steps_per_epoch, "4.1": conv_params,
    "5.1": flat_to_nhwc, "6.1": conv2d_valid, "7.1": max_pool_2x2, "8.1": dropout,
    "9.1": stable_softmax, "10.1": sgd_step, "11.1": accuracy_from_logits,
}


@pytest.mark.parametrize("number", sorted(ex.CHECKERS, key=lambda n: tuple(map(int, n.split(".")))))
def test_every_checker_accepts_its_reference_solution(number, capsys):
    assert_accepts(ex.CHECKERS[number], REFERENCE[number], capsys)


WRONG_ANSWERS = [
    ("1.1", plain_sum, "plain sum: square each element"),
    ("1.1", square_sum_plain, "decorate the function with @tf.function"),
    ("2.1", lambda y: np.unique(y, return_counts=True)[1], "return 10 counts"),
    ("2.1", lambda y: np.bincount(y), "shape"),
    ("3.1", lambda n, b, d: n // b, "round up"),
    ("3.1", lambda n, b, d: n / b, "whole number of steps"),
    ("4.1", lambda kh, kw, ci, co: kh * kw * ci * co, "add one bias per filter"),
    ("4.1", lambda kh, kw, ci, co: kh * kw * co + co, "multiply by c_in too"),
    ("4.1", lambda kh, kw, ci, co: kh * kw * ci * co + ci, "one bias per *output* channel"),
    ("5.1", lambda x: np.reshape(x, (-1, 1, 28, 28)), "NCHW"),
    ("5.1", lambda x: np.reshape(x, (-1, 28, 28, 1)).transpose(0, 2, 1, 3), "rows and columns are swapped"),
    ("5.1", lambda x: np.reshape(x, (3, 28, 28, 1)), "use -1"),
    ("6.1", lambda im, k: conv2d_valid(im, k[::-1, ::-1]), "kernel is flipped"),
    ("6.1", lambda im, k: np.pad(conv2d_valid(im, k), ((0, 1), (0, 1))), "off by one"),
    ("7.1", lambda m: m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).mean(axis=(1, 3)), "average pooling"),
    ("7.1", lambda m: np.lib.stride_tricks.sliding_window_view(m, (2, 2)).max(axis=(2, 3)), "windows overlap"),
    ("7.1", lambda m: np.maximum(max_pool_2x2(m), 0), "a maximum started at 0"),
    ("8.1", lambda x, r, rng: np.where(rng.random(x.shape) >= r, x, 0.0), "scaled by 1 / (1 - rate)"),
    ("8.1", lambda x, r, rng: np.where(rng.random(x.shape) < r, x / r if r else x, 0.0), "share to *drop*"),
    ("8.1", lambda x, r, rng: np.where(np.random.default_rng().random(x.shape) >= r, x / (1 - r), 0.0),
     "use the generator you are given"),
    ("9.1", lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True), "subtract the largest logit"),
    ("9.1", lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum(), "normalise each row"),
    ("10.1", lambda w, g, lr: w + lr * g, "step *against* the gradient"),
    ("10.1", lambda w, g, lr: w - g, "ignores the learning rate"),
    ("11.1", lambda z, y: 100 * float(np.mean(z.argmax(1) == y)), "not a percentage"),
    ("11.1", lambda z, y: int(np.sum(z.argmax(1) == y)), "divide by the number of images"),
]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("number, answer, hint", WRONG_ANSWERS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG_ANSWERS)])
def test_checkers_reject_realistic_mistakes_with_the_right_hint(number, answer, hint, capsys):
    assert_rejects(ex.CHECKERS[number], answer, hint, capsys)


def test_each_checker_has_at_least_two_wrong_answers():
    counts = {n: sum(1 for m, _, _ in WRONG_ANSWERS if m == n) for n in ex.CHECKERS}
    assert all(c >= 2 for c in counts.values()), counts


@pytest.mark.parametrize("number", sorted(ex.CHECKERS))
@pytest.mark.parametrize("answer, hint", [
    (None, "the answer is None"),
    (42, "expected a function, got a int"),
    ("conv2d", "expected a function, got a str"),
])
def test_checkers_survive_answers_of_the_wrong_type(number, answer, hint, capsys):
    assert_rejects(ex.CHECKERS[number], answer, hint, capsys)


def test_a_stub_that_raises_not_implemented_says_not_done(capsys):
    def stub(*args):
        raise NotImplementedError

    verdict, out = _verdict(ex.check_conv2d_valid, stub, capsys)
    assert not verdict and "not done yet" in out
    assert out.count("✗") == 1, "stop at the first case: one message is enough"


def test_a_function_that_crashes_or_returns_nothing_is_reported(capsys):
    assert_rejects(ex.check_stable_softmax, lambda z: z["x"], "your code raised IndexError", capsys)
    assert_rejects(ex.check_stable_softmax, lambda z: None, "did you forget `return`", capsys)


def test_a_slow_function_times_out_with_a_message(monkeypatch, capsys):
    monkeypatch.setattr(ex, "TIME_LIMIT_S", 0.2)
    assert_rejects(ex.check_conv_params, lambda *a: time.sleep(1), "took longer than", capsys)


def test_verdict_is_truthy_only_when_everything_passed(capsys):
    assert bool(ex.check_conv_params(conv_params)) is True
    assert bool(ex.check_conv_params(lambda *a: 0)) is False
    assert repr(ex.check_conv_params(conv_params)) == "Verdict('Exercise 4.1 (conv_params)', passed=True)"
