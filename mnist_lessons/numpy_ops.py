"""Every layer of the network written from scratch in plain NumPy, to be read.

These functions do, slowly and visibly, what TensorFlow's ops do fast. Chapters 6 to 9 put
each next to its TensorFlow twin and show that they give the same numbers; the tests check it on
random shapes, odd sizes included. Shapes are NHWC: ``(batch, height, width, channels)``;
convolution kernels are HWIO: ``(height, width, channels in, channels out)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PADDINGS = ("SAME", "VALID")


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """Zeros to add before and after one dimension for TensorFlow's ``SAME`` padding.

    ``SAME`` makes the output ``ceil(size / stride)`` long. When the padding needed is odd,
    TensorFlow puts the extra zero *after* (at the bottom or right), never before.

    >>> same_padding(28, 5, 1)
    (2, 2)
    >>> same_padding(7, 2, 2)   # 7 -> 4 outputs need one extra row, at the end
    (0, 1)
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _check_padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    return padding


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (pixels), got {value!r}")
    return int(value)


def _check_nhwc(x: Any, name: str = "x") -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 4:
        hint = ": add the batch and channel axes, e.g. img[None, :, :, None]" if a.ndim == 2 else ""
        raise ValueError(f"expected {name} in NHWC, (batch, height, width, channels), got shape "
                         f"{a.shape}{hint}")
    return a


def conv2d_numpy(x: Any, kernel: Any, stride: int = 1, padding: str = "SAME") -> np.ndarray:
    """2-D convolution as deep learning defines it (a cross-correlation: the kernel is not flipped).

    Each output value is the sum, over the window and over all input channels, of input times
    kernel: ``out[n, i, j, o] = sum_{a, b, c} x[n, i*s + a, j*s + b, c] * kernel[a, b, c, o]``,
    with ``x`` zero-padded first for ``SAME``.

    Args:
        x: images (N, H, W, C_in).
        kernel: filters (KH, KW, C_in, C_out).
        stride: how far the window moves each time, in both directions.
        padding: ``"SAME"`` (output ``ceil(H / stride)``, zeros around the border) or
            ``"VALID"`` (no padding: output ``(H - KH) // stride + 1``).

    Returns:
        (N, H_out, W_out, C_out), float64.
    """
    x = _check_nhwc(x).astype(np.float64)
    stride = _check_positive_int("stride", stride)
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4 or k.shape[2] != x.shape[3]:
        raise ValueError(f"kernel must be (height, width, {x.shape[3]} channels in, channels out) "
                         f"for input with {x.shape[3]} channel(s), got {k.shape}")
    kh, kw = k.shape[:2]
    if _check_padding(padding) == "SAME":
        (top, bottom), (left, right) = same_padding(x.shape[1], kh, stride), same_padding(x.shape[2], kw, stride)
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h, out_w = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit in a {x.shape[1]}x{x.shape[2]} image "
                         "without padding; use padding='SAME'")
    out = np.zeros((x.shape[0], out_h, out_w, k.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(window, k, axes=([1, 2, 3], [0, 1, 2]))
    return out


def pool2d_numpy(x: Any, window: int = 2, stride: int = 2, padding: str = "SAME",
                 mode: str = "max") -> np.ndarray:
    """Max or average pooling over ``window x window`` patches, channel by channel.

    With ``SAME`` padding the padded positions are *ignored* (not treated as zeros): a max
    over a border patch only sees real values, and an average divides by the real count.

    Args:
        x: (N, H, W, C).
        mode: ``"max"`` keeps the strongest response in each patch; ``"avg"`` its mean.

    Returns:
        (N, H_out, W_out, C), float64.
    """
    x = _check_nhwc(x).astype(np.float64)
    window, stride = _check_positive_int("window", window), _check_positive_int("stride", stride)
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    if _check_padding(padding) == "SAME":
        (top, bottom), (left, right) = same_padding(x.shape[1], window, stride), same_padding(x.shape[2], window, stride)
    else:
        top = bottom = left = right = 0
        if window > min(x.shape[1], x.shape[2]):
            raise ValueError(f"a {window}x{window} window does not fit in a {x.shape[1]}x{x.shape[2]} "
                             "image with VALID padding (no output): use a smaller window, or "
                             "padding='SAME'")
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=np.nan)
    out_h, out_w = (padded.shape[1] - window) // stride + 1, (padded.shape[2] - window) // stride + 1
    reduce = np.nanmax if mode == "max" else np.nanmean
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, i * stride:i * stride + window, j * stride:j * stride + window, :]
            out[:, i, j, :] = reduce(patch, axis=(1, 2))
    return out


def receptive_field(layers: Any) -> list[tuple[int, int]]:
    """How large a patch of the input one value sees after each layer, and how far apart the
    patches of neighbouring values are.

    Two different numbers, easy to confuse. The *spacing* (or total stride) is how many input
    pixels you move when you step to the next value of a map: every stride multiplies it. The
    *receptive field* is the size of the input patch a value depends on: a window of ``k``
    values, each ``spacing`` pixels apart, adds ``(k - 1) * spacing`` pixels to it::

        size_out = size_in + (window - 1) * spacing_in      spacing_out = spacing_in * stride

    starting from one pixel (size 1, spacing 1). Padding does not change either number; it only
    decides where the patches of the border values start. ReLU and dropout, which look at one
    value at a time, are layers with window 1 and stride 1 and change nothing.

    Args:
        layers: ``(window, stride)`` for each layer in order, e.g. ``(5, 1)`` for a 5 x 5
            convolution with stride 1 and ``(2, 2)`` for a 2 x 2 pool with stride 2.

    Returns:
        ``(size, spacing)`` after each layer, in input pixels (a patch is ``size x size``).

    >>> receptive_field([(5, 1), (2, 2), (5, 1), (2, 2)])   # conv1, pool1, conv2, pool2
    [(5, 1), (6, 2), (14, 2), (16, 4)]
    """
    size, spacing, out = 1, 1, []
    for i, layer in enumerate(layers):
        try:
            window, stride = layer
        except (TypeError, ValueError):
            raise ValueError(f"each layer is a pair (window, stride), got {layer!r} at position "
                             f"{i}") from None
        window = _check_positive_int("window", window)
        stride = _check_positive_int("stride", stride)
        size, spacing = size + (window - 1) * spacing, spacing * stride
        out.append((size, spacing))
    return out


def relu_numpy(x: Any) -> np.ndarray:
    """Rectified linear unit: negative values become 0, positive ones pass unchanged."""
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def dense_numpy(x: Any, weights: Any, bias: Any) -> np.ndarray:
    """Fully connected layer: every input times every weight, plus a bias: ``x @ W + b``.

    Args:
        x: (N, inputs); weights: (inputs, outputs); bias: (outputs,).
    """
    x, w, b = (np.asarray(a, dtype=np.float64) for a in (x, weights, bias))
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0] or b.shape != (w.shape[1],):
        raise ValueError(f"need x (N, inputs), weights (inputs, outputs), bias (outputs,); got "
                         f"{x.shape}, {w.shape}, {b.shape}")
    return x @ w + b


def dropout_numpy(x: Any, rate: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Inverted dropout, as ``tf.nn.dropout``: zero each value with probability ``rate`` and
    scale the survivors by ``1 / (1 - rate)``, so the expected value of every unit is unchanged.

    Because of the scaling, nothing needs to change at test time: dropout is simply left out.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate is the share dropped, in [0, 1), got {rate}")
    x = np.asarray(x, dtype=np.float64)
    rng = rng or np.random.default_rng()
    keep = rng.random(x.shape) >= rate
    return np.where(keep, x / (1.0 - rate), 0.0)


def softmax_naive(logits: Any) -> np.ndarray:
    """Softmax straight from the formula ``exp(z) / sum(exp(z))``. Overflows for logits above
    about 709 (``exp`` exceeds float64), giving ``nan``: see :func:`softmax_stable`."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(np.asarray(logits, dtype=np.float64))
        return e / e.sum(axis=-1, keepdims=True)


def softmax_stable(logits: Any) -> np.ndarray:
    """Softmax that never overflows: subtract each row's maximum first.

    ``exp(z - m) / sum(exp(z - m))`` equals ``exp(z) / sum(exp(z))`` for any ``m`` (the factor
    ``exp(-m)`` cancels), and with ``m = max(z)`` the largest exponent is ``exp(0) = 1``.
    """
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: Any) -> np.ndarray:
    """``log(softmax(z))`` computed stably as ``z - logsumexp(z)``."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def cross_entropy_numpy(labels: Any, logits: Any) -> np.ndarray:
    """Cross-entropy of each example from logits: ``-log(softmax(z)[label])``.

    Args:
        labels: integer digits (N,), or one-hot / probability rows (N, classes).
        logits: (N, classes).

    Returns:
        (N,) losses in nats; their mean is the batch loss.
    """
    logp = log_softmax(logits)
    y = np.asarray(labels)
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= logp.shape[-1]:
            raise ValueError(f"integer labels must lie in 0..{logp.shape[-1] - 1}")
        return -logp[np.arange(len(y)), y]
    if y.shape != logp.shape:
        raise ValueError(f"one-hot labels {y.shape} must match logits {logp.shape}")
    return -(y * logp).sum(axis=-1)


#: Hand-designed 3x3 kernels (HW), the kind of filters a network ends up learning by itself.
HAND_KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64),
    "vertical edges": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "horizontal edges": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),
    "blur": np.full((3, 3), 1 / 9),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "outline": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64),
}


def apply_kernel(image: Any, kernel: Any) -> np.ndarray:
    """Convolve one grey image (H, W) with one kernel (KH, KW), ``SAME`` padding: (H, W) out."""
    img, k = np.asarray(image, dtype=np.float64), np.asarray(kernel, dtype=np.float64)
    if img.ndim != 2 or k.ndim != 2:
        raise ValueError(f"expected one image (H, W) and one kernel (KH, KW), got {img.shape} "
                         f"and {k.shape}")
    return conv2d_numpy(img[None, :, :, None], k[:, :, None, None])[0, :, :, 0]


def conv_output_size(size: int, window: int, stride: int = 1, padding: int | str = 0) -> int:
    """How many outputs a window makes along one dimension: the *output size formula*.

    With ``P`` zeros added on each side, a window of ``K`` pixels moved ``S`` pixels at a time
    over ``W`` pixels fits ``floor((W - K + 2P) / S) + 1`` times: the last start position is
    ``W + 2P - K``, and starts come every ``S`` pixels from 0. The same formula serves
    convolutions and pooling.

    Args:
        size: ``W``, the input's height or width, in pixels (or values of a map).
        window: ``K``, the kernel or pooling window along that dimension.
        stride: ``S``, how far the window moves each time.
        padding: ``P`` zeros on *each* side (an int), or TensorFlow's names: ``"VALID"``
            (``P = 0``) and ``"SAME"`` (as many zeros as make the output ``ceil(W / S)``,
            possibly one more after than before; see :func:`same_padding`).

    Returns:
        The output's length along that dimension.

    >>> conv_output_size(28, 5, 1, 2)      # conv1: SAME padding is P = 2 here
    28
    >>> conv_output_size(28, 5)            # no padding: a 5-wide window fits 24 times
    24
    >>> conv_output_size(28, 2, 2, "SAME") # pool1
    14
    """
    size = _check_positive_int("size", size)
    window = _check_positive_int("window", window)
    stride = _check_positive_int("stride", stride)
    if isinstance(padding, str):
        if _check_padding(padding) == "SAME":
            return math.ceil(size / stride)
        padding = 0
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding is a number of zeros on each side (0, 1, 2, ...) or 'SAME' / "
                         f"'VALID', got {padding!r}")
    span = size - window + 2 * int(padding)
    if span < 0:
        raise ValueError(f"a window of {window} does not fit in {size} pixels with {padding} "
                         f"zero(s) of padding on each side: use a smaller window or more padding")
    return span // stride + 1


def receptive_field_span(layers: Any, index: int, size: int = 28) -> tuple[int, int]:
    """Which input pixels, first to last along one axis, one value of the last layer depends on.

    The companion of :func:`receptive_field` that also says *where* the patch lies, for layers
    with TensorFlow's ``SAME`` padding (the article's network). Value ``i`` of a layer with
    window ``k``, stride ``s`` and ``pb`` zeros of padding before reads the previous map's
    values ``i*s - pb`` to ``i*s - pb + k - 1``. Followed back to the input::

        first = offset + i * spacing        offset_out = offset_in - pb * spacing_in

    and ``last = first + field - 1``, with the field size and spacing of
    :func:`receptive_field`. A ``first`` below 0 or a ``last`` above ``size - 1`` means part of
    the patch lies in the zero padding, outside the image.

    Args:
        layers: ``(window, stride)`` per layer, in order, as for :func:`receptive_field`.
        index: the row (or column) of the value in the *last* layer's map, from 0.
        size: the input's height (or width): 28 for MNIST.

    Returns:
        ``(first, last)`` input pixel (inclusive).

    >>> receptive_field_span([(5, 1), (2, 2), (5, 1), (2, 2)], 3)   # pool2[3]
    (6, 21)
    """
    layers = list(layers)
    length = _check_positive_int("size", size)
    fields = receptive_field(layers)
    if not fields:
        raise ValueError("give at least one (window, stride) layer")
    offset, spacing = 0, 1
    for window, stride in layers:
        before, _ = same_padding(length, int(window), int(stride))
        offset -= before * spacing
        spacing, length = spacing * int(stride), math.ceil(length / int(stride))
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < length:
        raise ValueError(f"index must be a position in the last map, 0 to {length - 1}, got {index!r}")
    field = fields[-1][0]
    first = offset + int(index) * spacing
    return first, first + field - 1


#: The article's network as layer descriptions for :func:`layer_costs` (ReLU and dropout,
#: which neither multiply nor change a shape, are left out).
ARTICLE_LAYERS: tuple[dict[str, Any], ...] = (
    {"name": "conv1", "kind": "conv", "window": 5, "filters": 32},
    {"name": "pool1", "kind": "pool", "window": 2, "stride": 2},
    {"name": "conv2", "kind": "conv", "window": 5, "filters": 64},
    {"name": "pool2", "kind": "pool", "window": 2, "stride": 2},
    {"name": "fc", "kind": "dense", "units": 1024},
    {"name": "out", "kind": "dense", "units": 10},
)

_LAYER_KINDS = ("conv", "pool", "dense")


def layer_costs(layers: Any = ARTICLE_LAYERS, input_shape: tuple[int, int, int] = (28, 28, 1)
                ) -> list[dict[str, Any]]:
    """What each layer costs for one image: multiply-adds, values it outputs, parameters.

    Counted by hand from the shapes, the way one counts on paper (``SAME`` padding, so a
    border position counts its whole window even where the window covers padding zeros):

    - convolution, ``K x K`` window, ``C_in`` channels in, ``F`` filters, output ``H x W``:
      ``H * W * K * K * C_in * F`` multiply-adds (MACs), ``K * K * C_in * F + F`` parameters;
    - pooling: no multiplications and no parameters, only comparisons;
    - dense, ``n`` inputs (the previous shape flattened), ``m`` units: ``n * m`` MACs,
      ``n * m + m`` parameters.

    A *multiply-add* is one ``a * b + c``: two floating-point operations. Activations are the
    values a layer writes, per image (times 4 bytes in float32, times the batch size for a batch).

    Args:
        layers: dicts with ``name`` and ``kind`` (``"conv"``: ``window``, ``filters``, optional
            ``stride`` (1); ``"pool"``: ``window``, ``stride``; ``"dense"``: ``units``).
        input_shape: ``(height, width, channels)`` of one image.

    Returns:
        One dict per layer: ``name``, ``kind``, ``output_shape`` (a tuple), ``macs``,
        ``activations``, ``params`` (all ints, per image).

    >>> [row["macs"] for row in layer_costs()]
    [627200, 0, 10035200, 0, 3211264, 10240]
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ValueError(f"input_shape is (height, width, channels) of one image, e.g. (28, 28, 1), "
                         f"got {input_shape!r}")
    rows = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or layer.get("kind") not in _LAYER_KINDS:
            raise ValueError(f"layer {i} must be a dict with 'kind' one of {_LAYER_KINDS}, got "
                             f"{layer!r}")
        kind, name = layer["kind"], layer.get("name", f"layer{i}")
        if kind in ("conv", "pool") and len(shape) != 3:
            raise ValueError(f"{name}: a {kind} layer needs a (height, width, channels) input, but "
                             f"it comes after a dense layer (shape {shape})")
        if kind == "conv":
            k = _check_positive_int("window", layer.get("window"))
            f = _check_positive_int("filters", layer.get("filters"))
            s = _check_positive_int("stride", layer.get("stride", 1))
            h, w, c = shape
            out = (conv_output_size(h, k, s, "SAME"), conv_output_size(w, k, s, "SAME"), f)
            macs, params = out[0] * out[1] * k * k * c * f, k * k * c * f + f
        elif kind == "pool":
            k = _check_positive_int("window", layer.get("window"))
            s = _check_positive_int("stride", layer.get("stride", k))
            h, w, c = shape
            out = (conv_output_size(h, k, s, "SAME"), conv_output_size(w, k, s, "SAME"), c)
            macs, params = 0, 0
        else:
            m = _check_positive_int("units", layer.get("units"))
            n = int(np.prod(shape))
            out, macs, params = (m,), n * m, n * m + m
        rows.append({"name": name, "kind": kind, "output_shape": tuple(int(d) for d in out),
                     "macs": int(macs), "activations": int(np.prod(out)), "params": int(params)})
        shape = out
    return rows
