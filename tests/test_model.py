"""mnist_lessons.model: shapes, parameter counts, initialisations, dropout, Keras agreement."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons.data import scale_images
from mnist_lessons.model import (
    ArticleCNN,
    Hyperparameters,
    build_keras_model,
    check_model_input,
    copy_weights_to_keras,
    init_params,
    parameter_counts,
    shape_trace,
)
from mnist_lessons.train import cross_entropy


@pytest.fixture(scope="module")
def test_images(mnist):
    return scale_images(mnist.x_test[:256]), mnist.y_test[:256].astype(np.int32)


def test_parameter_counts_per_layer_are_the_articles():
    rows = {r["layer"]: r for r in parameter_counts()}
    assert rows["conv1"]["weight_shape"] == (5, 5, 1, 32) and rows["conv1"]["total"] == 5 * 5 * 32 + 32
    assert rows["conv2"]["weight_shape"] == (5, 5, 32, 64) and rows["conv2"]["total"] == 51_264
    assert rows["fc"]["weight_shape"] == (3136, 1024) and rows["fc"]["total"] == 3136 * 1024 + 1024
    assert rows["out"]["total"] == 10_250
    assert sum(r["total"] for r in rows.values()) == 3_274_634


def test_low_level_and_keras_models_have_the_same_parameter_count():
    model = ArticleCNN()
    assert sum(int(np.prod(v.shape)) for v in model.variables) == 3_274_634
    assert sum(r["total"] for r in parameter_counts(model)) == 3_274_634
    assert build_keras_model().count_params() == 3_274_634


def test_shape_trace_goes_784_to_10_through_the_articles_stages(test_images):
    x, _ = test_images
    trace = dict(shape_trace(ArticleCNN(), x[:4].reshape(4, 784)))
    assert trace == {
        "input": (4, 784), "reshaped": (4, 28, 28, 1), "conv1": (4, 28, 28, 32),
        "relu1": (4, 28, 28, 32), "pool1": (4, 14, 14, 32), "conv2": (4, 14, 14, 64),
        "relu2": (4, 14, 14, 64), "pool2": (4, 7, 7, 64), "flat": (4, 3136), "fc": (4, 1024),
        "dropout": (4, 1024), "logits": (4, 10)}


def test_keras_model_gives_the_same_logits_with_the_same_weights(test_images):
    x, _ = test_images
    model = ArticleCNN(Hyperparameters(seed=3))
    keras_model = build_keras_model()
    copy_weights_to_keras(model.weights, model.biases, keras_model)
    low = model(x).numpy()
    high = keras_model(x[..., None], training=False).numpy()
    assert np.abs(low).max() > 0.1  # a real signal, not zeros
    np.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, fan_in, fan_out, rel", [
    ("W_conv1", 5 * 5 * 1, 5 * 5 * 32, 0.15),     # 800 values: a looser tolerance
    ("W_conv2", 5 * 5 * 32, 5 * 5 * 64, 0.05),
    ("W_fc", 3136, 1024, 0.02),
    ("out", 1024, 10, 0.05),
])
def test_glorot_init_has_the_glorot_variance_and_zero_biases(name, fan_in, fan_out, rel):
    weights, biases = init_params("glorot", seed=0)
    w = weights[name].numpy()
    # Glorot uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), variance a^2 / 3.
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert w.var() == pytest.approx(2.0 / (fan_in + fan_out), rel=rel)
    assert abs(w.mean()) < 0.1 * limit
    assert 0.99 * limit < np.abs(w).max() <= limit
    assert all(np.all(b.numpy() == 0) for b in biases.values())


def test_article_init_is_standard_normal_for_weights_and_biases():
    weights, biases = init_params("article", seed=0)
    values = np.concatenate([v.numpy().ravel() for v in [*weights.values(), *biases.values()]])
    assert values.size == 3_274_634
    assert abs(values.mean()) < 0.005 and values.std() == pytest.approx(1.0, abs=0.005)
    # A normal puts 68.27% of its values within one standard deviation (a uniform of the same
    # spread: 57.7%).
    assert np.mean(np.abs(values) < 1.0) == pytest.approx(0.6827, abs=0.002)
    assert weights["W_fc"].numpy().std() == pytest.approx(1.0, abs=0.01)
    assert biases["b_fc"].numpy().std() == pytest.approx(1.0, abs=0.1)
    assert all(b.numpy().std() > 0.5 for b in biases.values()), "biases are drawn too"
    np.testing.assert_array_equal(init_params("article", 0)[0]["out"].numpy(), weights["out"].numpy())


def test_article_init_makes_the_first_loss_explode(test_images):
    x, y = test_images
    article = float(cross_entropy(y, ArticleCNN(Hyperparameters(init="article"))(x)))
    glorot = float(cross_entropy(y, ArticleCNN(Hyperparameters(init="glorot"))(x)))
    assert 1.5 < glorot < 3.5  # about ln(10) = 2.3: a fair guess among ten digits
    assert article > 1000 * glorot


def test_dropout_only_while_training_and_scales_kept_units(test_images):
    x, _ = test_images
    model = ArticleCNN()
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    s = model.stages(x, training=True)
    fc, dropped = s["fc"].numpy(), s["dropout"].numpy()
    active = fc > 0
    zeroed = (dropped == 0) & active
    assert zeroed.sum() / active.sum() == pytest.approx(0.2, abs=0.02)
    kept = active & ~zeroed
    np.testing.assert_allclose(dropped[kept], fc[kept] / 0.8, rtol=1e-5)


def test_articles_dropout_at_inference_makes_predictions_random(test_images):
    x, _ = test_images
    model = ArticleCNN(dropout_at_inference=True)
    assert not np.array_equal(model(x).numpy(), model(x).numpy())


def test_bad_inputs_get_clear_errors(mnist):
    model = ArticleCNN()
    with pytest.raises(ValueError, match="scale them first"):
        model(mnist.x_test[:2])
    with pytest.raises(ValueError, match=r"got \(28, 28\): pass a batch"):
        model(scale_images(mnist.x_test[0]))
    with pytest.raises(ValueError, match=r"got \(2, 32, 32\)"):
        check_model_input(np.zeros((2, 32, 32), np.float32))
    assert check_model_input(np.zeros((2, 784), np.float64)).dtype == tf.float32


@pytest.mark.parametrize("changes, message", [
    ({"init": "he"}, "unknown initialisation 'he'"),
    ({"keep_rate": 0.0}, "share of units kept"),
    ({"keep_rate": 1.5}, "share of units kept"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"epochs": 2.5}, "epochs must be a positive integer"),
    ({"learning_rate": -1.0}, "learning_rate must be positive"),
    ({"lr_decay": 0.0}, "final fraction"),
])
def test_hyperparameters_reject_impossible_values(changes, message):
    with pytest.raises(ValueError, match=message):
        Hyperparameters().replace(**changes)


def test_hyperparameters_replace_and_dropout_rate():
    hp = Hyperparameters().replace(keep_rate=0.5, epochs=2)
    assert hp.dropout_rate == 0.5 and hp.epochs == 2 and hp.batch_size == 128
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        hp.replace(momentum=0.9)


def test_set_weights_round_trips_and_checks_names_and_shapes(test_images):
    x, _ = test_images
    a, b = ArticleCNN(Hyperparameters(seed=1)), ArticleCNN(Hyperparameters(seed=2))
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    weights = a.get_weights()
    weights["weights/W_fc"] = weights["weights/W_fc"][:10]
    with pytest.raises(ValueError, match="W_fc has shape"):
        b.set_weights(weights)
    with pytest.raises(ValueError, match="missing"):
        b.set_weights({"weights/W_conv1": weights["weights/W_conv1"]})


def test_activation_scales_grow_with_the_article_init_and_stay_put_with_glorot(test_images):
    from mnist_lessons.model import activation_scales

    x, _ = test_images
    article = activation_scales(ArticleCNN(Hyperparameters(init="article")), x)
    glorot = activation_scales(ArticleCNN(Hyperparameters(init="glorot")), x)
    assert list(article) == ["reshaped", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                             "flat", "fc", "logits"]
    assert article["logits"] > 1000 * glorot["logits"]
    assert article["conv2"] > 10 * article["conv1"]  # roughly sqrt(800) times larger
    assert 0.01 < glorot["logits"] < 10
    # Glorot: from the first convolution to the logits the scale changes by less than 3x
    # (measured: 2.1x for seed 0, 1.9x for seed 1); the article's grows 20,000x.
    after_input = [v for k, v in glorot.items() if k != "reshaped"]
    assert max(after_input) < 3 * min(after_input)


def test_bfloat16_forward_is_close_to_float32(test_images):
    x, _ = test_images
    model = ArticleCNN(Hyperparameters(seed=4))
    full = model(x).numpy()
    half = model.stages(x, compute_dtype="bfloat16")["logits"]
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half.numpy(), full, atol=0.05 * np.abs(full).max())
    assert (half.numpy().argmax(1) == full.argmax(1)).mean() > 0.9


def _with_random_biases(model, seed):
    """``model`` with biases of both signs (Glorot's start has zero biases, with which adding
    the bias before or after ReLU or pooling gives the same logits, so a test could not tell)."""
    rng = np.random.default_rng(seed)
    for bias in model.biases.values():
        bias.assign(rng.normal(0.0, 0.2, bias.shape).astype(np.float32))
    return model


def _keras_twin(model):
    twin = build_keras_model(model.hp)
    copy_weights_to_keras(model.weights, model.biases, twin)
    return twin


def _loss_and_gradients(forward, variables, x, y):
    with tf.GradientTape() as tape:
        loss = cross_entropy(y, forward(x))
    return float(loss), [g.numpy() for g in tape.gradient(loss, variables)]


@pytest.mark.parametrize("seed", [3, 8])
def test_pooling_before_bias_and_relu_gives_keras_logits_and_gradients(test_images, seed):
    # The oracle is Keras's Sequential model, which adds the bias and applies ReLU before each
    # max-pool (the article's order), given the same weights: pooling first must give the same
    # logits, loss and gradient of every variable on real digits.
    x, y = test_images
    model = _with_random_biases(ArticleCNN(Hyperparameters(seed=seed)), seed)
    twin = _keras_twin(model)
    fast = model.logits_pooled_first(x).numpy()
    np.testing.assert_allclose(fast, twin(x[..., None], training=False).numpy(), rtol=1e-4, atol=1e-5)
    keras_variables = [v for layer in ("conv1", "conv2", "fc", "out")
                       for v in twin.get_layer(layer).trainable_weights]
    loss, grads = _loss_and_gradients(model.logits_pooled_first, model.variables, x, y)
    keras_loss, keras_grads = _loss_and_gradients(lambda t: twin(t[..., None], training=False),
                                                  keras_variables, x, y)
    assert loss == pytest.approx(keras_loss, rel=1e-5)
    for variable, g, k in zip(model.variables, grads, keras_grads):
        assert np.abs(k).max() > 0, variable.name  # every layer really gets a gradient
        np.testing.assert_allclose(g, k, rtol=1e-3, atol=1e-4 * np.abs(k).max(),
                                   err_msg=variable.name)


def test_pooling_first_keeps_dropout_and_bfloat16_as_the_stages_do(test_images):
    x, _ = test_images
    model = _with_random_biases(ArticleCNN(Hyperparameters(seed=5)), 5)
    seed = tf.constant([5, 17], tf.int64)
    for dtype, tolerance in (("float32", 1e-5), ("bfloat16", 0.02)):
        fast = model.logits_pooled_first(x, training=True, compute_dtype=dtype, dropout_seed=seed)
        slow = model.stages(x, training=True, compute_dtype=dtype, dropout_seed=seed)["logits"]
        assert fast.dtype == tf.float32  # the head stays float32 under bfloat16
        np.testing.assert_allclose(fast.numpy(), slow.numpy(),
                                   atol=tolerance * np.abs(slow.numpy()).max())
    # Dropout really runs: a training pass differs from an inference pass.
    assert np.abs(model.logits_pooled_first(x, training=True, dropout_seed=seed).numpy()
                  - model.logits_pooled_first(x).numpy()).max() > 1e-3
