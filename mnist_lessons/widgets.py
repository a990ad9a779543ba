"""Interactive explorers for Colab and Jupyter (ipywidgets), one per idea of chapters 6 to 9.

Each explorer is a thin layer of controls over plain functions that compute what it shows;
those functions are tested directly (a widget's JavaScript never runs under the tests or in the
static book). The rendered book shows a static figure of the same thing next to each widget.

Every ``*_explorer`` returns the widget box and keeps its last figure in ``box.figure``, so the
callbacks can be exercised from Python: change a control's ``value`` and read the result.
"""

from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np

from .data import check_images
from .numpy_ops import HAND_KERNELS, apply_kernel, pool2d_numpy, softmax_stable

LAYERS = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2")


# ---- the plain functions behind the widgets ------------------------------------------------------


def parse_kernel(text: str) -> np.ndarray:
    """Turn typed kernel values into a square array: rows on lines, numbers split by spaces or commas.

    Accepts 3x3 or 5x5. ``"0 -1 0\\n-1 5 -1\\n0 -1 0"`` is the sharpen kernel.

    Raises:
        ValueError: saying what is wrong (not a number, ragged rows, wrong size).
    """
    if not isinstance(text, str):
        raise ValueError(f"type the kernel as text, one row per line; got {type(text).__name__}")
    rows = [r for r in (line.replace(",", " ").split() for line in text.strip().splitlines()) if r]
    try:
        values = [[float(v) for v in row] for row in rows]
    except ValueError as err:
        raise ValueError(f"every entry must be a number: {err}") from None
    if len({len(r) for r in values}) > 1:
        raise ValueError(f"every row needs the same number of values, got rows of {[len(r) for r in values]}")
    kernel = np.array(values, dtype=np.float64)
    if kernel.shape not in ((3, 3), (5, 5)):
        raise ValueError(f"type a 3x3 or 5x5 kernel, got {kernel.shape[0]} row(s) of "
                         f"{kernel.shape[1] if kernel.ndim == 2 else 0}")
    return kernel


def kernel_response(image: Any, kernel: Any) -> tuple[np.ndarray, np.ndarray]:
    """One digit convolved with one kernel, before and after ReLU: two (28, 28) maps."""
    img = check_images(np.asarray(image)[None])[0].astype(np.float64)
    img = img / 255.0 if np.asarray(image).dtype == np.uint8 else img
    out = apply_kernel(img, kernel)
    return out, np.maximum(out, 0.0)


def pool_map(image: Any, window: int, stride: int, mode: str = "max") -> np.ndarray:
    """Pool one map (H, W) with a square window and stride (``SAME`` padding): (H', W')."""
    m = np.asarray(image, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected one map (H, W), got {m.shape}")
    if not (1 <= window <= 8 and 1 <= stride <= 8):
        raise ValueError(f"window and stride are 1 to 8 pixels, got {window} and {stride}")
    return pool2d_numpy(m[None, :, :, None], window, stride, "SAME", mode)[0, :, :, 0]


def softmax_with_temperature(logits: Any, temperature: float) -> np.ndarray:
    """``softmax(logits / T)``: T > 1 flattens the probabilities, T < 1 sharpens them."""
    if not temperature > 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    return softmax_stable(np.asarray(logits, dtype=np.float64) / temperature)


def network_view(model: Any, image: Any, layer: str) -> tuple[np.ndarray, int, np.ndarray]:
    """The maps of ``layer`` for one digit, the predicted digit and the probabilities.

    Returns:
        ``(maps (H, W, C), predicted digit, probabilities (10,))``.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    img = check_images(np.asarray(image)[None])
    x = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    stages = model.stages(x)
    probs = softmax_stable(np.asarray(stages["logits"])[0])
    return np.asarray(stages[layer])[0], int(probs.argmax()), probs


# ---- the widgets ---------------------------------------------------------------------------------


def _show(box: Any, out: Any, draw: Callable[[], plt.Figure], failed: str) -> None:
    """Draw into the output area ``out``; a ``ValueError`` (a typing mistake in the controls, a
    file that is not a picture) is said in one sentence, and the widget keeps going."""
    from IPython.display import display

    with out:
        out.clear_output(wait=True)
        try:
            fig = draw()
        except ValueError as err:
            box.error = str(err)
            print(f"{failed}: {err}")
            return
        box.error = None
        if box.figure is not None:
            plt.close(box.figure)
        box.figure = fig
        display(fig)
        plt.close(fig)


def _box(controls: list, draw: Callable[[], plt.Figure]):
    """Controls above an output area; ``draw`` runs now and whenever a control changes."""
    import ipywidgets as w

    out = w.Output()
    box = w.VBox([w.HBox(controls), out])
    box.figure = None
    box.error = None

    def redraw(_change: Any = None) -> None:
        _show(box, out, draw, "Cannot draw")

    for control in controls:
        control.observe(redraw, names="value")
    redraw()
    return box


def kernel_explorer(images: Any):
    """Pick a digit and a kernel (a preset, or typed values) and see its output and ReLU'd output."""
    import ipywidgets as w

    imgs = check_images(images)
    index = w.IntSlider(0, 0, len(imgs) - 1, description="digit")
    preset = w.Dropdown(options=list(HAND_KERNELS) + ["typed below"], value="vertical edges",
                        description="kernel")
    typed = w.Textarea("0 -1 0\n-1 5 -1\n0 -1 0", description="values", rows=5)

    def draw() -> plt.Figure:
        kernel = parse_kernel(typed.value) if preset.value == "typed below" else HAND_KERNELS[preset.value]
        out, relu = kernel_response(imgs[index.value], kernel)
        fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
        limit = max(float(np.abs(out).max()), 1e-9)
        panels = [(imgs[index.value], "gray_r", None, None, "digit"),
                  (kernel, "RdBu_r", -np.abs(kernel).max(), np.abs(kernel).max(), "kernel"),
                  (out, "RdBu_r", -limit, limit, "convolved"),
                  (relu, "viridis", 0, max(relu.max(), 1e-9), "after ReLU")]
        for ax, (data, cmap, vmin, vmax, title) in zip(axes, panels):
            ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(title)
            ax.set_axis_off()
        return fig

    return _box([index, preset, typed], draw)


def feature_map_browser(model: Any, images: Any, labels: Any, n_maps: int = 16):
    """Pick a test digit and a layer: see that layer's maps and what the network predicts."""
    import ipywidgets as w

    from .viz import plot_feature_maps

    imgs = check_images(images)
    labels = np.asarray(labels)
    index = w.IntSlider(0, 0, len(imgs) - 1, description="digit")
    layer = w.Dropdown(options=LAYERS, value="relu1", description="layer")

    def draw() -> plt.Figure:
        maps, predicted, probs = network_view(model, imgs[index.value], layer.value)
        return plot_feature_maps(maps, n=n_maps, title=(
            f"{layer.value}: {maps.shape[0]}x{maps.shape[1]}x{maps.shape[2]} | true {labels[index.value]}, "
            f"predicted {predicted} ({probs[predicted]:.0%})"))

    return _box([index, layer], draw)


def pooling_explorer(image: Any):
    """Window and stride sliders over one map, max or average: see what pooling keeps."""
    import ipywidgets as w

    m = np.asarray(image, dtype=np.float64)
    window = w.IntSlider(2, 1, 6, description="window")
    stride = w.IntSlider(2, 1, 6, description="stride")
    mode = w.ToggleButtons(options=["max", "avg"], value="max", description="mode")

    def draw() -> plt.Figure:
        pooled = pool_map(m, window.value, stride.value, mode.value)
        fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
        for ax, data, title in ((axes[0], m, f"input {m.shape[0]}x{m.shape[1]}"),
                                (axes[1], pooled, f"{mode.value}-pooled {pooled.shape[0]}x{pooled.shape[1]}")):
            ax.imshow(data, cmap="viridis")
            ax.set_title(title)
            ax.set_axis_off()
        return fig

    return _box([window, stride, mode], draw)


def softmax_temperature_slider(logits: Any):
    """A temperature slider over one digit's logits: watch the probabilities sharpen or flatten."""
    import ipywidgets as w

    from .viz import plot_probabilities

    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"expected the logits of one image, shape (10,), got {z.shape}")
    temperature = w.FloatLogSlider(1.0, base=10, min=-1, max=1.5, step=0.05, description="T")

    def draw() -> plt.Figure:
        p = softmax_with_temperature(z, temperature.value)
        return plot_probabilities(p, title=f"softmax(logits / {temperature.value:.2f})")

    return _box([temperature], draw)


# ---- your own digit (chapter 11) -----------------------------------------------------------------


def uploaded_bytes(value: Any) -> bytes:
    """The bytes of the one file in a ``FileUpload`` widget's ``value``.

    ipywidgets 8 (Jupyter today) gives a tuple of dicts, each with a ``"content"`` memoryview;
    ipywidgets 7 (Colab's) gives a dict from the file name to a dict with ``"content"`` bytes.
    Both are accepted. Raises ``ValueError`` when no file, or more than one, was uploaded.
    """
    files = list(value.values()) if isinstance(value, dict) else list(value or ())
    if len(files) != 1:
        raise ValueError(f"upload one picture of one digit (got {len(files)} files)")
    try:
        return bytes(files[0]["content"])
    except (TypeError, KeyError):
        raise ValueError("this does not look like a FileUpload value: no 'content' in it") from None


def digit_prediction(model: Any, data: bytes):
    """The figure for a picture file's bytes: the digit preprocessed as MNIST was, and the
    network's ten probabilities. Raises ``ValueError`` (with what to do) for a file that is not
    a picture of a digit."""
    from .evaluate import predict_logits, softmax
    from .preprocess import digit_from_file, preprocess_digit
    from .viz import plot_probabilities

    digit = preprocess_digit(digit_from_file(data))
    p = softmax(predict_logits(model, digit[None]))[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.6), width_ratios=[1, 3])
    left.imshow(digit, cmap="gray_r")
    left.set_axis_off()
    left.set_title("preprocessed")
    plot_probabilities(p, ax=right, title=f"the network says {p.argmax()}")
    fig.probabilities = p
    return fig


def digit_upload(model: Any):
    """Upload a photo or drawing of a digit (PNG or JPEG) and see what ``model`` reads in it.

    Returns the widget box; ``box.figure`` is the last figure and ``box.error`` the last
    problem with a file (shown to the reader as a sentence, never a trace)."""
    import ipywidgets as w

    upload, out = w.FileUpload(accept="image/*", multiple=False), w.Output()
    box = w.VBox([upload, out])
    box.figure = box.error = None

    def show(change: Any) -> None:
        _show(box, out, lambda: digit_prediction(model, uploaded_bytes(change["new"])), "Cannot read it")

    upload.observe(show, names="value")
    return box
