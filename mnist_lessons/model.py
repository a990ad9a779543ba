"""The article's network in today's TensorFlow: low-level ops on ``tf.Variable``s, and in Keras.

The architecture is the article's, unchanged (shapes NHWC)::

    (N, 784) -> reshape (N, 28, 28, 1)
    -> conv 5x5, 32 filters, SAME, + bias, ReLU   (N, 28, 28, 32)
    -> max-pool 2x2, stride 2, SAME               (N, 14, 14, 32)
    -> conv 5x5, 64 filters, SAME, + bias, ReLU   (N, 14, 14, 64)
    -> max-pool 2x2, stride 2, SAME               (N, 7, 7, 64)
    -> flatten                                    (N, 3136)
    -> dense 3136 x 1024, + bias, ReLU, dropout   (N, 1024)
    -> dense 1024 x 10, + bias                    (N, 10) logits

Two things differ from the article, on purpose and switchable so the book can show their cost:
the weights start from Glorot's initialisation with zero biases (the article drew every weight
and bias from a normal distribution of standard deviation 1: ``init="article"``), and dropout
runs only while training (the article's ``tf.nn.dropout(fc, keep_rate)`` ran at test time too:
``dropout_at_inference=True``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .data import IMAGE_SIDE, N_CLASSES
from .runtime import PRECISIONS

INITIALISATIONS = ("glorot", "article")

# The article's dictionaries, with their key names: weights and biases of each layer.
WEIGHT_SHAPES: dict[str, tuple[int, ...]] = {
    "W_conv1": (5, 5, 1, 32),
    "W_conv2": (5, 5, 32, 64),
    "W_fc": (7 * 7 * 64, 1024),
    "out": (1024, N_CLASSES),
}
BIAS_SHAPES: dict[str, tuple[int, ...]] = {
    "b_conv1": (32,),
    "b_conv2": (64,),
    "b_fc": (1024,),
    "out": (N_CLASSES,),
}
LAYERS = (("conv1", "W_conv1", "b_conv1"), ("conv2", "W_conv2", "b_conv2"),
          ("fc", "W_fc", "b_fc"), ("out", "out", "out"))


@dataclass(frozen=True)
class Hyperparameters:
    """The settings of the article's network and its training, in one place.

    Attributes:
        n_classes: output classes, the ten digits.
        batch_size: images per training step (the article: 128).
        keep_rate: probability that dropout *keeps* a unit of the FC layer (the article: 0.8).
            TF2's ``tf.nn.dropout`` takes the opposite, ``rate = 1 - keep_rate``.
        epochs: passes over the 55,000 training images (60,000 less the 5,000 validation ones).
        learning_rate: Adam's step size at the start of training.
        lr_decay: factor the learning rate ends at after all epochs (cosine schedule);
            1.0 keeps it constant as the article did.
        seed: seeds the initial weights, the shuffles and dropout.
        init: ``"glorot"`` (default) or ``"article"`` (normal, stddev 1, weights and biases).
        shift: data augmentation: move each training image by up to this many pixels (0: off,
            as the article).
        precision: compute type of the training step: ``"float32"``, ``"bfloat16"`` (mixed
            precision: float32 weights, bfloat16 multiplications; on the 2-core AMX CPU the
            README's benchmark measured, a step took about 0.6 times as long as in float32,
            0.57-0.62 across its runs) or ``"auto"`` (bfloat16 only where the hardware has it).
    """

    n_classes: int = N_CLASSES
    batch_size: int = 128
    keep_rate: float = 0.8
    epochs: int = 10
    learning_rate: float = 1e-3
    lr_decay: float = 1.0
    seed: int = 0
    init: str = "glorot"
    shift: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        # Normalise the types first, so that equal settings are equal (and give one cache key):
        # ``batch_size=np.int64(64)`` becomes 64 and ``learning_rate=1`` becomes 1.0.
        def whole(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                kind = "a positive integer" if low == 1 else f"an integer >= {low}"
                raise ValueError(f"{name} must be {kind}, got {v!r}")
            object.__setattr__(self, name, int(v))

        def real(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(v):
                raise ValueError(f"{name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
            return float(v)

        for name in ("n_classes", "batch_size", "epochs"):
            whole(name, 1)
        whole("seed", 0)
        if isinstance(self.shift, bool) or not isinstance(self.shift, (int, np.integer)) or not 0 <= self.shift <= 8:
            raise ValueError(f"shift is a number of pixels from 0 to 8, got {self.shift!r}")
        object.__setattr__(self, "shift", int(self.shift))
        if not 0.0 < real("keep_rate") <= 1.0:
            raise ValueError(f"keep_rate is the share of units kept, in (0, 1]; got {self.keep_rate}")
        if not real("learning_rate") > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < real("lr_decay") <= 1.0:
            raise ValueError(f"lr_decay is the final fraction of the learning rate, in (0, 1]; "
                             f"got {self.lr_decay}")
        if self.init not in INITIALISATIONS:
            raise ValueError(f"unknown initialisation {self.init!r}: use one of {INITIALISATIONS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: use one of {PRECISIONS}")

    @property
    def dropout_rate(self) -> float:
        """Share of FC units dropped while training: ``1 - keep_rate``."""
        return 1.0 - self.keep_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (for cache keys and printing)."""
        return asdict(self)

    def replace(self, **changes: Any) -> "Hyperparameters":
        """A copy with some fields changed, validated again."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}")
        return Hyperparameters(**{**self.to_dict(), **changes})


# --- Presets: the settings the book trains with, named once -----------------------------------

#: The course's default settings: the article's network, batch size, keep rate, optimizer and
#: 10 epochs, with Glorot initialisation, dropout only while training, a cosine learning-rate
#: decay, and training images shifted by up to 2 pixels (the shipped course model trained with
#: them scores 99.50% on the test set: ``course_model.json``).
COURSE_DEFAULTS = Hyperparameters(epochs=10, learning_rate=1e-3, lr_decay=0.02, shift=2, seed=0)

#: Chapter 10's side-by-side runs: the article's setup (its N(0, 1) initialisation; pass
#: ``dropout_at_inference=True`` for its dropout at test time) against the same training with
#: the two mistakes fixed. Constant learning rate, no augmentation, two epochs each.
ARTICLE_SETUP = Hyperparameters(epochs=2, lr_decay=1.0, init="article", seed=0)
CORRECTED_SETUP = Hyperparameters(epochs=2, lr_decay=1.0, init="glorot", seed=0)

#: Adam against plain SGD on the same budget of one epoch, each at a rate that suits it.
ADAM_ONE_EPOCH = Hyperparameters(epochs=1, learning_rate=1e-3, seed=0)
SGD_ONE_EPOCH = Hyperparameters(epochs=1, learning_rate=0.05, seed=0)

#: The benchmark's fast run to 99% validation accuracy (the test accuracy is measured once, at the
#: end): a higher rate with cosine decay over 3 epochs.
FAST_TO_99 = Hyperparameters(epochs=3, learning_rate=2e-3, lr_decay=0.02, seed=0)


def _glorot_uniform(shape: tuple[int, ...], rng) -> Any:
    """Glorot (Xavier) uniform: keeps activations' variance roughly constant layer to layer."""
    import tensorflow as tf

    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(shape, -limit, limit, dtype=tf.float32)


def init_params(init: str = "glorot", seed: int = 0) -> tuple[dict, dict]:
    """Create the article's weight and bias dictionaries as ``tf.Variable``s.

    Args:
        init: ``"glorot"``: Glorot-uniform weights, zero biases (what Keras does by default).
            ``"article"``: every weight *and* bias drawn from N(0, 1), as the article's
            ``tf.random_normal``; activations then grow by a factor of about
            ``sqrt(fan_in)`` per layer and the first losses are huge (chapter 4 measures it).
        seed: the same seed gives the same numbers.

    Returns:
        ``(weights, biases)`` keyed like the article: ``W_conv1``, ``W_conv2``, ``W_fc``, ``out``
        and ``b_conv1``, ``b_conv2``, ``b_fc``, ``out``.
    """
    import tensorflow as tf

    if init not in INITIALISATIONS:
        raise ValueError(f"unknown initialisation {init!r}: use one of {INITIALISATIONS}")
    rng = tf.random.Generator.from_seed(seed)
    weights, biases = {}, {}
    for key, shape in WEIGHT_SHAPES.items():
        value = rng.normal(shape) if init == "article" else _glorot_uniform(shape, rng)
        weights[key] = tf.Variable(value, name=key)
    for key, shape in BIAS_SHAPES.items():
        value = rng.normal(shape) if init == "article" else tf.zeros(shape)
        biases[key] = tf.Variable(value, name=f"b_{key}" if key == "out" else key)
    return weights, biases


def conv2d(x, W):
    """The article's convolution: stride 1, ``SAME`` padding, so height and width are kept."""
    import tensorflow as tf

    return tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding="SAME")


def maxpool2d(x):
    """The article's pooling: 2x2 windows moved by 2, halving height and width (28 -> 14 -> 7)."""
    import tensorflow as tf

    return tf.nn.max_pool2d(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")


def check_model_input(x: Any) -> Any:
    """Accept (N, 784), (N, 28, 28) or (N, 28, 28, 1) float images in [0, 1]; say what is wrong.

    Raises ValueError at the boundary instead of a TensorFlow trace from deep inside a conv.
    """
    import tensorflow as tf

    shape = tuple(x.shape)
    ok = (len(shape) == 2 and shape[1] == IMAGE_SIDE * IMAGE_SIDE) or (
        len(shape) == 3 and shape[1:] == (IMAGE_SIDE, IMAGE_SIDE)) or (
        len(shape) == 4 and shape[1:] == (IMAGE_SIDE, IMAGE_SIDE, 1))
    if not ok:
        hint = ": pass a batch, e.g. x[None]" if shape in ((28, 28), (784,), (28, 28, 1)) else ""
        raise ValueError(f"expected images of shape (N, 784), (N, 28, 28) or (N, 28, 28, 1), "
                         f"got {shape}{hint}")
    dtype = tf.as_dtype(x.dtype)
    if not dtype.is_floating:
        raise ValueError(f"expected float images in [0, 1], got {dtype.name}: scale them first "
                         "with mnist_lessons.data.scale_images(x)")
    return tf.cast(x, tf.float32) if dtype != tf.float32 else x


class ArticleCNN:
    """The article's network on ``tf.Variable``s, with a ``training`` flag for dropout.

    Call it on a batch of images to get logits: ``model(x)`` for inference (dropout off),
    ``model(x, training=True)`` while training. ``model.stages(x)`` returns every intermediate
    tensor, for the shape trace and the feature-map figures.
    """

    def __init__(self, hp: Hyperparameters | None = None, *,
                 dropout_at_inference: bool = False) -> None:
        self.hp = hp or Hyperparameters()
        self.dropout_at_inference = dropout_at_inference
        self.weights, self.biases = init_params(self.hp.init, self.hp.seed)

    @property
    def variables(self) -> list:
        """Every trainable variable, in layer order (weights then bias of each layer)."""
        return [v for _, w, b in LAYERS for v in (self.weights[w], self.biases[b])]

    def stages(self, x, training: bool = False, compute_dtype: str = "float32",
               dropout_seed: Any = None) -> dict[str, Any]:
        """Run the network and return every stage, in order, keyed by name.

        Keys: ``input``, ``reshaped``, ``conv1``, ``relu1``, ``pool1``, ``conv2``, ``relu2``,
        ``pool2``, ``flat``, ``fc``, ``dropout``, ``logits``.

        With ``compute_dtype="bfloat16"`` the convolutions and the big FC layer multiply in
        bfloat16, from bfloat16 copies of the float32 weights (mixed precision). The head,
        dropout and the output layer, always computes in float32 (``fc`` onwards is float32): a
        dropout mask drawn in bfloat16 has only 128 levels between 0 and 1, so the rate 0.2
        would become 0.203, and the logits the loss reads deserve full precision.

        ``dropout_seed``: a pair of integers (or an int64 tensor of shape (2,)). When given,
        dropout draws its mask from a stateless random function of it, so the same seed gives
        the same mask (training passes ``(seed, step)``); when None, from TensorFlow's global
        random state.
        """
        import tensorflow as tf

        x, w, b = self._operands(x, compute_dtype)
        s: dict[str, Any] = {"input": x}
        s["reshaped"] = tf.reshape(x, [-1, IMAGE_SIDE, IMAGE_SIDE, 1])
        s["conv1"] = conv2d(s["reshaped"], w["W_conv1"]) + b["b_conv1"]
        s["relu1"] = tf.nn.relu(s["conv1"])
        s["pool1"] = maxpool2d(s["relu1"])
        s["conv2"] = conv2d(s["pool1"], w["W_conv2"]) + b["b_conv2"]
        s["relu2"] = tf.nn.relu(s["conv2"])
        s["pool2"] = maxpool2d(s["relu2"])
        s["flat"] = tf.reshape(s["pool2"], [-1, 7 * 7 * 64])
        s["fc"], s["dropout"], s["logits"] = self.head(
            s["flat"], training, dropout_seed, W_fc=w["W_fc"], b_fc=b["b_fc"])
        return s

    def logits_pooled_first(self, x, training: bool = False, compute_dtype: str = "float32",
                            dropout_seed: Any = None):
        """``stages(x, ...)["logits"]``, computed with each max-pool before its bias and ReLU.

        The two orders give the same numbers: adding the same bias ``b`` to the four values
        of a window keeps the largest one largest, so ``max(v + b) = max(v) + b``, and ReLU
        never changes which value is largest, so ``max(relu(v)) = relu(max(v))``. Hence
        ``pool(relu(conv + b)) = relu(pool(conv) + b)``, and pooling first adds the bias and
        applies ReLU (forward, and their gradients backward) to a quarter of the numbers:
        (N, 14, 14, 32) instead of (N, 28, 28, 32) after conv1. The training step uses this
        order (chapter 7 shows the equality on a real digit; ``benchmarks/profile_step.py``
        times both). The logits agree with ``stages`` to rounding; the gradients too, except
        where two values of a window tie (then either may receive the gradient, both valid).
        """
        import tensorflow as tf

        x, w, b = self._operands(x, compute_dtype)
        h = tf.reshape(x, [-1, IMAGE_SIDE, IMAGE_SIDE, 1])
        h = tf.nn.relu(maxpool2d(conv2d(h, w["W_conv1"])) + b["b_conv1"])
        h = tf.nn.relu(maxpool2d(conv2d(h, w["W_conv2"])) + b["b_conv2"])
        flat = tf.reshape(h, [-1, 7 * 7 * 64])
        return self.head(flat, training, dropout_seed, W_fc=w["W_fc"], b_fc=b["b_fc"])[2]

    def head(self, flat, training: bool = False, dropout_seed: Any = None, *,
             W_fc: Any = None, b_fc: Any = None) -> tuple[Any, Any, Any]:
        """The layers after the convolutions: ``(fc, dropout, logits)`` from ``flat`` (N, 3136).

        FC layer with ReLU (its multiply in ``flat``'s dtype), then in float32: dropout (when
        ``training``, or always with ``dropout_at_inference``) and the output layer.
        ``W_fc``/``b_fc`` replace the FC layer's weights (default: the model's own), e.g. a
        bfloat16 copy, or a quantised matrix to measure what quantisation costs.
        """
        import tensorflow as tf

        W_fc = self.weights["W_fc"] if W_fc is None else W_fc
        b_fc = self.biases["b_fc"] if b_fc is None else b_fc
        fc = tf.cast(tf.nn.relu(tf.matmul(flat, W_fc) + b_fc), tf.float32)
        drop = (training or self.dropout_at_inference) and self.hp.dropout_rate > 0
        if not drop:
            dropped = fc
        elif dropout_seed is None:
            dropped = tf.nn.dropout(fc, rate=self.hp.dropout_rate)
        else:
            dropped = tf.nn.experimental.stateless_dropout(
                fc, rate=self.hp.dropout_rate, seed=tf.cast(dropout_seed, tf.int64))
        return fc, dropped, tf.matmul(dropped, self.weights["out"]) + self.biases["out"]

    def _operands(self, x, compute_dtype: str) -> tuple[Any, dict, dict]:
        """The checked input and the weights and biases, as ``compute_dtype`` copies where it
        is not float32 (the output layer stays float32)."""
        import tensorflow as tf

        x = check_model_input(x)
        w, b = self.weights, self.biases
        if compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype is 'float32' or 'bfloat16', got {compute_dtype!r}")
        if compute_dtype != "float32":
            w = {k: tf.cast(v, compute_dtype) for k, v in w.items() if k != "out"}
            b = {k: tf.cast(v, compute_dtype) for k, v in b.items() if k != "out"}
            x = tf.cast(x, compute_dtype)
        return x, w, b

    def __call__(self, x, training: bool = False):
        """Logits (N, 10) for a batch of images."""
        return self.stages(x, training)["logits"]

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every variable as a NumPy array, keyed ``weights/<name>`` and ``biases/<name>``."""
        out = {f"weights/{k}": v.numpy() for k, v in self.weights.items()}
        out.update({f"biases/{k}": v.numpy() for k, v in self.biases.items()})
        return out

    def set_weights(self, arrays: dict[str, np.ndarray]) -> None:
        """Load arrays from :meth:`get_weights`, checking that every name and shape matches."""
        expected = self.get_weights()
        if set(arrays) != set(expected):
            raise ValueError(f"weights do not match the article's network: missing "
                             f"{sorted(set(expected) - set(arrays))}, unexpected "
                             f"{sorted(set(arrays) - set(expected))}")
        for key, value in arrays.items():
            if np.shape(value) != expected[key].shape:
                raise ValueError(f"{key} has shape {np.shape(value)}, expected {expected[key].shape}")
        for key, value in arrays.items():
            group, name = key.split("/")
            (self.weights if group == "weights" else self.biases)[name].assign(value)


def parameter_counts(model: ArticleCNN | None = None) -> list[dict[str, Any]]:
    """Weights and biases of each layer: name, weight shape, counts (the FC layer dominates)."""
    rows = []
    for layer, w, b in LAYERS:
        w_shape = WEIGHT_SHAPES[w] if model is None else tuple(model.weights[w].shape)
        b_shape = BIAS_SHAPES[b] if model is None else tuple(model.biases[b].shape)
        n_w, n_b = int(np.prod(w_shape)), int(np.prod(b_shape))
        rows.append({"layer": layer, "weight_shape": w_shape, "weights": n_w, "biases": n_b,
                     "total": n_w + n_b})
    return rows


def shape_trace(model: ArticleCNN, x) -> list[tuple[str, tuple[int, ...]]]:
    """The shape after each stage for input ``x``: ``[("input", (N, 784)), ...]``."""
    return [(name, tuple(t.shape)) for name, t in model.stages(x).items()]


def activation_scales(model: ArticleCNN, x) -> dict[str, float]:
    """Standard deviation of every stage's values for a batch ``x`` (dropout off).

    With Glorot's initialisation the scale drops at conv1 (to about a quarter of the input's,
    chapter 4 prints it) and then stays roughly level; with the article's
    N(0, 1) weights it grows by roughly ``sqrt(fan_in)`` at each layer (25, then 800 inputs...),
    which is why its first losses are in the thousands or millions.
    """
    import tensorflow as tf

    return {name: float(tf.math.reduce_std(tf.cast(t, tf.float32)))
            for name, t in model.stages(x).items() if name not in ("input", "dropout")}


def build_keras_model(hp: Hyperparameters | None = None):
    """The same network as a ``keras.Sequential`` (Glorot weights, zero biases, dropout).

    Its layer order and shapes mirror :class:`ArticleCNN`, so :func:`copy_weights_to_keras`
    can give both identical weights (tests check they then give the same logits, to float32
    rounding: the two compute the same sums in different orders).
    """
    import keras
    from keras import layers

    hp = hp or Hyperparameters()
    keras.utils.set_random_seed(hp.seed)
    return keras.Sequential([
        keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE, 1)),
        layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2, padding="same", name="pool1"),
        layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(2, padding="same", name="pool2"),
        layers.Flatten(name="flat"),
        layers.Dense(1024, activation="relu", name="fc"),
        layers.Dropout(hp.dropout_rate, name="dropout"),
        layers.Dense(hp.n_classes, name="out"),
    ], name="article_cnn")


def copy_weights_to_keras(weights: dict, biases: dict, keras_model) -> None:
    """Give the Keras model exactly the low-level weights and biases (the article's dictionaries,
    e.g. ``model.weights`` and ``model.biases`` of an :class:`ArticleCNN`)."""
    for layer, w, b in LAYERS:
        keras_model.get_layer(layer).set_weights([np.asarray(weights[w]), np.asarray(biases[b])])
