"""mnist_lessons.train and mnist_lessons.evaluate: real steps on real data, and the metrics."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_lessons.evaluate import (
    accuracy,
    accuracy_with_dropout,
    confusion_matrix,
    misclassified,
    per_class_accuracy,
    predict_logits,
    softmax,
    accuracy_on_test_set,
)
from mnist_lessons.model import ArticleCNN, Hyperparameters
from mnist_lessons.train import History, make_optimizer, train


@pytest.fixture(scope="module")
def short_run(mnist):
    """100 real Adam steps (12,800 images) with the article's batch size, evaluated every 50."""
    model = ArticleCNN(Hyperparameters(seed=0))
    history = train(model, mnist, max_steps=100, eval_every=50, verbose=False)
    return model, history


@pytest.mark.slow
def test_loss_falls_and_accuracy_rises_over_real_steps(short_run):
    _, h = short_run
    losses = np.asarray(h.step_losses)
    assert len(losses) == 100
    assert losses[:10].mean() > 1.5 and losses[-10:].mean() < 0.5 * losses[:10].mean()
    assert [s for s, _, _ in h.evaluations] == [50, 100]
    assert h.evaluations[-1][2] > 0.9 and h.evaluations[-1][2] > h.evaluations[0][2] - 0.01


@pytest.mark.slow
def test_history_records_are_consistent(short_run, mnist):
    model, h = short_run
    (epoch,) = h.epochs
    assert epoch.steps == 100 and epoch.loss == pytest.approx(np.mean(h.step_losses))
    assert epoch.loss_sum == pytest.approx(np.sum(h.step_losses))
    assert epoch.test_accuracy == h.final_test_accuracy == pytest.approx(accuracy_on_test_set(model, mnist))
    assert 0 < epoch.seconds == h.training_seconds and epoch.images_per_second > 0
    back = History.from_arrays(h.to_arrays())
    assert back.epochs == h.epochs and back.evaluations == h.evaluations
    assert back.step_losses == pytest.approx(h.step_losses) and back.target_reached is None


@pytest.mark.slow
def test_training_stops_at_the_target_accuracy(mnist, capsys):
    model = ArticleCNN(Hyperparameters(seed=1))
    h = train(model, mnist, target_accuracy=0.5, eval_every=10, max_steps=200)
    assert h.target_reached is not None and h.target_reached[0] % 10 == 0
    assert len(h.step_losses) == h.target_reached[0] < 200
    assert "reached 50.0% test accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_sgd_trains_too_but_slower_than_adam(mnist, short_run):
    model = ArticleCNN(Hyperparameters(seed=0))
    h = train(model, mnist, optimizer="sgd", max_steps=100, verbose=False)
    assert h.step_losses[-1] < h.step_losses[0]
    assert h.final_test_accuracy < short_run[1].final_test_accuracy


def test_train_rejects_what_it_cannot_train(mnist):
    with pytest.raises(TypeError, match="expects an ArticleCNN"):
        train("my model", mnist)
    with pytest.raises(ValueError, match="target_accuracy is a share"):
        train(ArticleCNN(), mnist, target_accuracy=99)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", Hyperparameters(), 10)


def test_cosine_schedule_decays_to_the_final_fraction():
    opt = make_optimizer("adam", Hyperparameters(learning_rate=1e-3, lr_decay=0.1), 100)
    lr = opt._learning_rate  # Keras keeps the schedule object here
    assert float(lr(0)) == pytest.approx(1e-3) and float(lr(50)) == pytest.approx(5.5e-4)
    assert float(lr(100)) == pytest.approx(1e-4)
    assert float(make_optimizer("sgd", Hyperparameters(), 100).learning_rate) == pytest.approx(1e-3)


def test_predict_logits_takes_uint8_or_scaled_images(mnist):
    model = ArticleCNN()
    a = predict_logits(model, mnist.x_test[:300], batch_size=128)
    b = predict_logits(model, mnist.x_test[:300].astype(np.float32) / 255.0)
    assert a.shape == (300, 10)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_accuracy_and_confusion_matrix_on_a_hand_example():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 2, 2])
    assert accuracy(predicted, labels) == pytest.approx(4 / 6)
    m = confusion_matrix(labels, predicted)
    assert m[0, 0] == 1 and m[0, 1] == 1 and m[1, 1] == 2 and m[1, 2] == 1 and m[2, 2] == 1
    assert m.sum() == 6 and m.shape == (10, 10)
    per_class = per_class_accuracy(labels, predicted)
    assert per_class[:3] == pytest.approx([0.5, 2 / 3, 1.0]) and np.isnan(per_class[3])
    with pytest.raises(ValueError, match="as many predictions as labels"):
        accuracy(predicted[:2], labels)


def test_confusion_matrix_rows_are_the_class_counts(mnist):
    predicted = np.roll(mnist.y_test, 1)
    m = confusion_matrix(mnist.y_test, predicted)
    np.testing.assert_array_equal(m.sum(axis=1), np.bincount(mnist.y_test))
    np.testing.assert_array_equal(m.sum(axis=0), np.bincount(predicted))
    assert np.trace(m) / m.sum() == pytest.approx(accuracy(predicted, mnist.y_test))


def test_misclassified_lists_mistakes_most_confident_first():
    labels = np.array([3, 1, 4, 1])
    probs = np.full((4, 10), 0.01)
    probs[0, 3] = 0.91                      # right
    probs[1, 7] = 0.60; probs[1, 1] = 0.31  # wrong, 60% sure
    probs[2, 9] = 0.85; probs[2, 4] = 0.06  # wrong, 85% sure
    probs[3, 1] = 0.91                      # right
    m = misclassified(labels, probs)
    assert len(m) == 2 and m.indices.tolist() == [2, 1]
    assert m.predicted.tolist() == [9, 7] and m.true.tolist() == [4, 1]
    assert m.confidence.tolist() == pytest.approx([0.85, 0.60])
    with pytest.raises(ValueError, match=r"shape \(4, 10\)"):
        misclassified(labels, probs[:, :5])


def test_softmax_is_stable_and_sums_to_one():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(p[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())


def test_learning_rates_cover_a_full_run():
    from mnist_lessons.train import learning_rates

    steps, rates = learning_rates(Hyperparameters(epochs=2, lr_decay=0.1))
    assert len(steps) == 2 * 469 + 1
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert np.all(np.diff(rates) <= 1e-12)
    _, constant = learning_rates(Hyperparameters(epochs=1))
    assert np.all(constant == pytest.approx(1e-3))


@pytest.mark.slow
def test_shift_augmentation_and_bfloat16_train_too(mnist):
    hp = Hyperparameters(shift=2, precision="bfloat16", seed=2)
    h = train(ArticleCNN(hp), mnist, hp, max_steps=100, verbose=False)
    assert np.mean(h.step_losses[-10:]) < 0.5 * np.mean(h.step_losses[:10])
    assert h.final_test_accuracy > 0.9


def test_progress_prints_only_finished_lines_outside_notebooks(capsys):
    from mnist_lessons.train import Progress

    p = Progress(enabled=True)
    p.update(Progress.line(1, 2, 10, 469, 0.5, 1000.0))
    p.finish(Progress.line(1, 2, 469, 469, 0.1, 5000.0, "  test acc 98.00%"))
    out = capsys.readouterr().out
    assert out == "epoch 1/2 [====================] 469/469 steps  loss 0.1000  5,000 images/s  test acc 98.00%\n"
    Progress(enabled=False).finish("hidden")
    assert capsys.readouterr().out == ""


def test_progress_in_a_notebook_updates_one_output_in_place():
    from mnist_lessons.train import Progress

    class FakeHandle:
        def __init__(self):
            self.shown = []

        def update(self, data, raw):
            self.shown.append(data["text/plain"])

    p = Progress(enabled=True)
    p.handle = FakeHandle()
    p.update("epoch 1/2 half")
    p.finish("epoch 1/2 done")
    p.update("epoch 2/2 half")
    p.finish("epoch 2/2 done")
    assert p.handle.shown == ["epoch 1/2 half", "epoch 1/2 done", "epoch 1/2 done\nepoch 2/2 half",
                              "epoch 1/2 done\nepoch 2/2 done"]


@pytest.mark.slow
def test_accuracy_with_dropout_left_on_is_lower_and_varies(short_run, mnist):
    model, _ = short_run
    x, y = mnist.x_test[:2000], mnist.y_test[:2000]
    clean = accuracy_with_dropout(model, x, y, 0.0, repeats=2)
    assert clean[0] == clean[1] == pytest.approx(accuracy(predict_logits(model, x).argmax(1), y))
    article = accuracy_with_dropout(model, x, y, 0.2, repeats=5)
    verbatim_port = accuracy_with_dropout(model, x, y, 0.8, repeats=3)
    assert len(set(article)) > 1, "new masks every call (five equal accuracies would be a fluke)"
    assert np.mean(verbatim_port) < np.mean(article) < clean[0] + 0.005
    with pytest.raises(ValueError, match="share of units dropped"):
        accuracy_with_dropout(model, x, y, 1.0)
