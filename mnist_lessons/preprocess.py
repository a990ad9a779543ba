"""Your own digit, prepared the way MNIST's digits were: a 20 x 20 box centred by mass in 28 x 28.

MNIST's images were made from scanned digits in two steps (LeCun, Cortes and Burges describe
them on the dataset's page): each digit was scaled, keeping its aspect ratio, to fit a 20 x 20
box, then placed in a 28 x 28 image so that its centre of mass sits at the centre. Measured on
MNIST's own 60,000 training digits, that centre is pixel (14, 14) counting from 0: 99.997% of them
have their centre of mass within half a pixel of it (the frame's geometric middle, 13.5, is
half a pixel up and left of it), so this module moves a digit's centre of mass there. A network
trained on those images expects a digit of that size at that place; a digit drawn small in a
corner looks to it like nothing it has seen. :func:`preprocess_digit` does the same to any
grey-level picture of one digit, so the course model can read it.

The steps are spelled out exactly (numbered as in the function's docstring) because a
JavaScript twin in the live page must produce the same pixels from the same drawing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Side of an MNIST image, in pixels.
FRAME = 28
#: Side of the box the digit is scaled to fit, in pixels.
BOX = 20
#: Where MNIST's digits have their centre of mass, in pixel indices (row, column) counted from 0.
MNIST_CENTRE_OF_MASS = 14


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves upwards: ``floor(x + 0.5)`` (2.5 -> 3, -2.5 -> -2).

    Python's ``round`` rounds halves to even (``round(2.5) == 2``); JavaScript's ``Math.round``
    rounds them up. The spec uses this one so both languages agree.
    """
    return int(math.floor(x + 0.5))


def check_digit_image(image: Any) -> np.ndarray:
    """Step 1: ``image`` as float64 (H, W) in [0, 1], ink high, or a ValueError saying what to fix.

    Accepts uint8 0-255 or floats; if the largest value is above 1 the image is read as 0-255
    and divided by 255.
    """
    a = np.asarray(image)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"expected a 2D array of numbers (grey levels), got dtype {a.dtype}")
    if a.ndim != 2:
        hint = (": pass one digit, e.g. image[0]" if a.ndim == 3 and a.shape[0] == 1 else
                ": pass a grey-level image (H, W); for RGB take one channel or the mean"
                if a.ndim == 3 and a.shape[-1] in (3, 4) else "")
        raise ValueError(f"expected one digit as a 2D array (H, W), got shape {a.shape}{hint}")
    if a.size == 0:
        raise ValueError(f"the image is empty (shape {a.shape}): draw a digit first")
    if np.iscomplexobj(a):
        raise ValueError("expected real grey levels, got complex numbers")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("the image contains NaN or infinite values: replace them (e.g. with 0)")
    if a.min() < 0:
        raise ValueError(f"grey levels must be >= 0 (ink high, paper 0), got a minimum of {a.min()}")
    top = a.max()
    if top > 255:
        raise ValueError(f"grey levels must be in [0, 1] or [0, 255], got a maximum of {top}")
    if top > 1:
        a = a / 255.0
    if top == 0:
        raise ValueError("the image has no ink (every pixel is 0): draw a digit, ink bright on "
                         "a dark background (invert a dark-on-white scan with 255 - image)")
    return a


def ink_bounding_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Step 2: ``(top, bottom, left, right)`` of the pixels > 0, bottom and right exclusive."""
    rows = np.flatnonzero((image > 0).any(axis=1))
    cols = np.flatnonzero((image > 0).any(axis=0))
    if rows.size == 0:
        raise ValueError("the image has no ink (every pixel is 0): draw a digit first")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def box_size(h: int, w: int, box: int = BOX) -> tuple[int, int]:
    """Step 3: the size (h', w') of an h x w crop scaled by ``s = box / max(h, w)``.

    Each side is ``max(1, round_half_up(side * s))``: the longer side becomes ``box`` pixels,
    the other keeps the aspect ratio (a thin "1" stays thin, but at least one pixel wide).
    """
    s = box / max(h, w)
    return max(1, round_half_up(h * s)), max(1, round_half_up(w * s))


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Overlap matrix (n_out, n_in) for resampling one axis by exact area averaging.

    Output pixel ``i`` covers the input interval ``[i * n_in / n_out, (i + 1) * n_in / n_out)``
    (the whole input spread over the whole output). Entry ``(i, k)`` is the length of that
    interval's overlap with input pixel ``[k, k + 1)``, divided by the interval's length, so
    each row sums to 1: a weighted average, fractional overlaps counted by their share.
    """
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for k in range(int(math.floor(lo)), min(n_in, int(math.ceil(hi)))):
            overlap = min(hi, k + 1) - max(lo, k)
            if overlap > 0:
                weights[i, k] = overlap / scale
    return weights


def resize_area(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Step 4: resample (H, W) to (out_h, out_w) by exact area averaging, in float64.

    Each output pixel is the mean of the input over its footprint (see :func:`area_weights`);
    rows and columns are separable, so this is ``R @ image @ C.T``.
    """
    image = np.asarray(image, dtype=np.float64)
    rows = area_weights(image.shape[0], out_h)
    cols = area_weights(image.shape[1], out_w)
    return rows @ image @ cols.T


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """Step 6: the intensity-weighted mean row and column ``(cy, cx)``, in pixel indices."""
    image = np.asarray(image, dtype=np.float64)
    total = image.sum()
    if total <= 0:
        raise ValueError("the image has no ink, so it has no centre of mass")
    rows = np.arange(image.shape[0], dtype=np.float64)
    cols = np.arange(image.shape[1], dtype=np.float64)
    return float((image.sum(axis=1) @ rows) / total), float((image.sum(axis=0) @ cols) / total)


def preprocess_digit(image: Any) -> np.ndarray:
    """One digit as MNIST would have it: float32 (28, 28) in [0, 1], 20 x 20 box, centred by mass.

    ``image`` is a 2D grey-level picture of a single digit, ink high (white on black, as in
    MNIST), uint8 0-255 or float 0-1, of any size. The steps:

    1. check it (2D, not empty, some ink, no negative or NaN values); if its maximum is above 1,
       divide by 255;
    2. find the bounding box of the pixels > 0;
    3. crop to it; scale factor ``s = 20 / max(h, w)``; new size
       ``(max(1, round_half_up(h * s)), max(1, round_half_up(w * s)))``, with
       ``round_half_up(x) = floor(x + 0.5)``;
    4. resample the crop to that size by exact area averaging (float64);
    5. paste it into a 28 x 28 zero image at ``(floor((28 - h') / 2), floor((28 - w') / 2))``;
    6. compute the centre of mass ``(cy, cx)`` (weights = intensity) and shift the box by
       ``(floor(14 - cy + 0.5), floor(14 - cx + 0.5))``, clipped so it stays in the frame (14:
       where MNIST's digits have theirs, see the module's docstring);
    7. return it as float32.

    Raises:
        ValueError: for input that is not one 2D picture with ink, with what to do about it.
    """
    return preprocess_steps(image)["centred"].astype(np.float32)    # 7


def preprocess_steps(image: Any) -> dict[str, np.ndarray]:
    """Every step of :func:`preprocess_digit`, for the figure: float64 arrays keyed
    ``input`` (checked, 0-1), ``crop`` (its ink box), ``scaled`` (longer side 20 px),
    ``pasted`` (top-left offset in 28 x 28) and ``centred`` (moved by the centre of mass).
    """
    a = check_digit_image(image)                                    # 1
    top, bottom, left, right = ink_bounding_box(a)                  # 2
    crop = a[top:bottom, left:right]                                # 3
    h2, w2 = box_size(*crop.shape)
    small = resize_area(crop, h2, w2)                               # 4
    y0, x0 = (FRAME - h2) // 2, (FRAME - w2) // 2                   # 5
    framed = np.zeros((FRAME, FRAME), dtype=np.float64)
    framed[y0:y0 + h2, x0:x0 + w2] = small
    cy, cx = center_of_mass(framed)                                 # 6
    centre = MNIST_CENTRE_OF_MASS                                   # 14
    dy = min(max(round_half_up(centre - cy), -y0), FRAME - h2 - y0)
    dx = min(max(round_half_up(centre - cx), -x0), FRAME - w2 - x0)
    out = np.zeros((FRAME, FRAME), dtype=np.float64)
    out[y0 + dy:y0 + dy + h2, x0 + dx:x0 + dx + w2] = small
    return {"input": a, "crop": crop, "scaled": small, "pasted": framed, "centred": out}


def render_strokes(strokes: Any, height: int = 200, width: int = 160,
                   line_width: float = 14.0) -> np.ndarray:
    """Draw pen strokes as a grey-level image (height, width) float64 in [0, 1], ink high.

    ``strokes`` is a list of strokes, each a sequence of ``(x, y)`` points in pixels of the
    canvas (x to the right, y downwards, as on a screen). It stands in for a digit drawn with
    the mouse: a page that runs without a person still has a hand-drawn-like digit to read.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 8:
            raise ValueError(f"{name} must be an integer of at least 8 pixels, got {value!r}")
    lines = [np.asarray(stroke, dtype=np.float64) for stroke in strokes]
    if not lines or any(line.ndim != 2 or line.shape[1] != 2 or len(line) < 1 for line in lines):
        raise ValueError("strokes must be a non-empty list of (x, y) point sequences, "
                         "e.g. [[(40, 30), (120, 30), (60, 170)]] for a 7")
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    for line in lines:
        ax.plot(line[:, 0], line[:, 1], color="white", linewidth=line_width * 0.72,
                solid_capstyle="round", solid_joinstyle="round")
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba(), dtype=np.float64)
    return rgba[:height, :width, 0] / 255.0


def digit_from_file(data: bytes) -> np.ndarray:
    """A digit image from the bytes of a picture file (PNG, JPEG...): grey (H, W) float in
    [0, 1], ink high. A picture with a light background (dark ink on paper) is inverted."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        grey = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("L"), dtype=np.float64) / 255.0
    except UnidentifiedImageError:
        raise ValueError("could not read that file as an image: upload a PNG or JPEG of one "
                         "digit") from None
    if np.median(grey) > 0.5:  # mostly light: dark ink on white paper
        grey = 1.0 - grey
    return grey
