"""Figures of the course (matplotlib), and its one plotting style.

Every plot function takes data (and optionally an ``ax`` or ``fig`` to draw into), returns the
:class:`~matplotlib.figure.Figure`, and never calls ``show()``: the notebook displays what it
returns, and tests can count its panels.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .data import N_CLASSES, check_images, check_labels

# Digits are drawn dark on light, as on paper; heat maps use one diverging scale.
DIGIT_CMAP = "gray_r"
COURSE_STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.figsize": (7.0, 3.5),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "image.cmap": DIGIT_CMAP,
    "image.interpolation": "nearest",
    "axes.prop_cycle": matplotlib.cycler(color=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                                "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]),
}


def use_course_style() -> None:
    """Apply the course's matplotlib settings (called by :func:`mnist_lessons.setup_course`)."""
    matplotlib.rcParams.update(COURSE_STYLE)


def _grid(n: int, n_cols: int, fig: Figure | None, panel: float = 1.1) -> tuple[Figure, np.ndarray]:
    n_cols = max(1, min(n_cols, n))
    n_rows = int(np.ceil(n / n_cols))
    if fig is None:
        fig = plt.figure(figsize=(panel * n_cols, panel * n_rows + 0.3))
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def plot_digits(images: Any, labels: Any | None = None, *, predictions: Any | None = None,
                n_cols: int = 10, fig: Figure | None = None, title: str | None = None) -> Figure:
    """A gallery of digits, each titled with its label (and prediction, if given).

    Args:
        images: (N, 28, 28) or (N, 784), uint8 0-255 or float 0-1.
        labels: (N,) true digits, or None.
        predictions: (N,) predicted digits; a wrong prediction is titled in red.
        n_cols: panels per row.

    Returns:
        The figure, with one axes per image.
    """
    imgs = check_images(images)
    n = len(imgs)
    if n == 0:
        raise ValueError("plot_digits needs at least one image")
    labels = None if labels is None else check_labels(labels, n)
    predictions = None if predictions is None else check_labels(predictions, n)
    fig, axes = _grid(n, n_cols, fig)
    for i, ax in enumerate(axes):
        ax.imshow(imgs[i], cmap=DIGIT_CMAP)
        ax.set_axis_off()
        if predictions is not None:
            wrong = labels is not None and predictions[i] != labels[i]
            text = f"{predictions[i]}" + (f" (true {labels[i]})" if wrong else "")
            ax.set_title(text, color="tab:red" if wrong else "black", fontsize=9)
        elif labels is not None:
            ax.set_title(str(labels[i]), fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def plot_class_counts(y_train: Any, y_test: Any, ax: Axes | None = None) -> Figure:
    """Bars of how many images each digit has, training and test side by side."""
    y_train, y_test = check_labels(y_train), check_labels(y_test)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    digits = np.arange(N_CLASSES)
    width = 0.4
    for offset, y, name in ((-width / 2, y_train, "training"), (width / 2, y_test, "test")):
        counts = np.bincount(y, minlength=N_CLASSES)
        ax.bar(digits + offset, counts, width, label=f"{name} ({len(y):,} images)")
    ax.set_xticks(digits)
    ax.set_xlabel("digit")
    ax.set_ylabel("images")
    ax.legend(frameon=False)
    ax.set_title("How many images of each digit")
    return ax.figure


def plot_pixel_histogram(images: Any, ax: Axes | None = None, bins: int = 64) -> Figure:
    """Histogram of pixel intensities (log count), showing MNIST is mostly background."""
    imgs = check_images(images)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.hist(imgs.ravel(), bins=bins, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("pixel intensity (0 = background, 255 = ink)" if imgs.dtype == np.uint8
                  else "pixel intensity")
    ax.set_ylabel("pixels (log scale)")
    ax.set_title("Distribution of pixel intensities")
    return ax.figure


def mean_digits(images: Any, labels: Any) -> np.ndarray:
    """The average image of each digit: (10, 28, 28) float64, in the images' own units."""
    imgs = check_images(images)
    labels = check_labels(labels, len(imgs))
    missing = sorted(set(range(N_CLASSES)) - set(np.unique(labels).tolist()))
    if missing:
        raise ValueError(f"no image of digit(s) {missing}: pass a sample that has every digit")
    return np.stack([imgs[labels == d].mean(axis=0) for d in range(N_CLASSES)])


def plot_mean_digits(images: Any, labels: Any, fig: Figure | None = None) -> Figure:
    """Ten panels: the average of all images of each digit."""
    means = mean_digits(images, labels)
    fig, axes = _grid(N_CLASSES, N_CLASSES, fig)
    for d, ax in enumerate(axes):
        ax.imshow(means[d], cmap=DIGIT_CMAP)
        ax.set_title(f"mean {d}", fontsize=9)
        ax.set_axis_off()
    return fig


def plot_digit_values(image: Any, ax: Axes | None = None, step: int = 1) -> Figure:
    """One digit as the grid of numbers the network actually sees, drawn over the image.

    Args:
        image: one image (28, 28) or (784,).
        step: print every ``step``-th value in each direction (1 prints all 784).
    """
    a = np.asarray(image)
    if a.shape == (784,):
        a = a.reshape(28, 28)
    if a.shape != (28, 28):
        raise ValueError(f"expected one image of shape (28, 28) or (784,), got {a.shape}: "
                         "pass x[i], not the whole batch")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 9))
    ax.imshow(a, cmap=DIGIT_CMAP)
    threshold = a.max() / 2 if a.max() > 0 else 1
    for r in range(0, 28, step):
        for c in range(0, 28, step):
            v = a[r, c]
            text = f"{v:.2f}" if np.issubdtype(a.dtype, np.floating) else str(v)
            ax.text(c, r, text, ha="center", va="center", fontsize=5.5,
                    color="white" if v > threshold else "black")
    ax.set_xticks(range(0, 28, 4))
    ax.set_yticks(range(0, 28, 4))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    return ax.figure


def plot_bars(values: Sequence[float], labels: Sequence[str], *, ax: Axes | None = None,
              xlabel: str = "", title: str = "", log: bool = False) -> Figure:
    """Horizontal bars with their values printed at the end (tables a reader can see)."""
    values = np.asarray(values, dtype=float)
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values but {len(labels)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(values) + 1))
    y = np.arange(len(values))[::-1]
    ax.barh(y, values, color="tab:blue")
    ax.set_yticks(y, labels)
    if log:
        ax.set_xscale("log")
    for yi, v in zip(y, values):
        ax.text(v, yi, f" {v:,.0f}" if float(v).is_integer() else f" {v:,.3g}", va="center")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return ax.figure


def plot_training_curves(histories: dict[str, Any], fig: Figure | None = None,
                         smooth: int = 20) -> Figure:
    """Loss per step (log scale, smoothed) and validation accuracy, one line per run.

    Args:
        histories: run name -> :class:`mnist_lessons.train.History`.
        smooth: moving-average window over steps for the loss (1 draws raw losses).
    """
    if not histories:
        raise ValueError("plot_training_curves needs at least one history")
    if fig is None:
        fig = plt.figure(figsize=(10, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, h in histories.items():
        losses = np.asarray(h.step_losses, dtype=float)
        if len(losses) == 0:
            raise ValueError(f"run {name!r} has no training steps")
        w = max(1, min(smooth, len(losses)))
        smoothed = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax_loss.plot(np.arange(w, len(losses) + 1), smoothed, label=name)
        if h.evaluations:
            steps, _, acc = zip(*h.evaluations)
            ax_acc.plot(steps, 100 * np.asarray(acc), marker="o", label=name)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("cross-entropy (log scale)")
    ax_loss.set_title("Training loss")
    ax_acc.set_xlabel("training step")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_acc.set_title("Validation accuracy (5,000 held-out images)")
    for ax in (ax_loss, ax_acc):
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix: Any, ax: Axes | None = None) -> Figure:
    """Heat map of a 10x10 confusion matrix (rows true, columns predicted), counts printed.

    The colour scale is logarithmic so that the few mistakes show next to the large diagonal.
    """
    m = np.asarray(matrix)
    if m.shape != (N_CLASSES, N_CLASSES):
        raise ValueError(f"expected a 10x10 confusion matrix, got shape {m.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(np.log10(m + 1), cmap="Blues")
    for (r, c), v in np.ndenumerate(m):
        if v:
            ax.text(c, r, str(v), ha="center", va="center", fontsize=8,
                    color="white" if r == c else "black")
    ax.set_xticks(range(N_CLASSES))
    ax.set_yticks(range(N_CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("Confusion matrix (test set)")
    ax.figure.colorbar(image, ax=ax, label="log10(count + 1)", shrink=0.8)
    return ax.figure


def plot_mistakes(images: Any, mistakes: Any, n: int = 20, n_cols: int = 10,
                  fig: Figure | None = None) -> Figure:
    """Gallery of misclassified digits: predicted digit with its confidence, and the truth.

    Args:
        images: the evaluated images (N, 28, 28).
        mistakes: a :class:`mnist_lessons.evaluate.Mistakes` (most confident first).
        n: how many to show.
    """
    imgs = check_images(images)
    n = min(n, len(mistakes))
    if n == 0:
        raise ValueError("there are no mistakes to show")
    fig, axes = _grid(n, n_cols, fig, panel=1.2)
    for i, ax in enumerate(axes):
        ax.imshow(imgs[mistakes.indices[i]], cmap=DIGIT_CMAP)
        ax.set_axis_off()
        ax.set_title(f"{mistakes.predicted[i]} ({mistakes.confidence[i]:.0%})\ntrue {mistakes.true[i]}",
                     fontsize=8, color="tab:red")
    return fig


def plot_activation_scales(scales: dict[str, dict[str, float]], ax: Axes | None = None) -> Figure:
    """Grouped bars (log scale): the spread of each stage's values, one colour per run.

    Args:
        scales: run name -> {stage name -> standard deviation}, from
            :func:`mnist_lessons.model.activation_scales`; every run has the same stages.
    """
    if not scales:
        raise ValueError("plot_activation_scales needs at least one run")
    stages = list(next(iter(scales.values())))
    if any(list(s) != stages for s in scales.values()):
        raise ValueError("every run must have the same stages, in the same order")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.5))
    width = 0.8 / len(scales)
    x = np.arange(len(stages))
    for i, (name, s) in enumerate(scales.items()):
        ax.bar(x + (i - (len(scales) - 1) / 2) * width, [s[k] for k in stages], width, label=name)
    ax.set_yscale("log")
    ax.set_xticks(x, stages, rotation=30)
    ax.set_ylabel("standard deviation (log scale)")
    ax.set_title("How large the values are at each stage, for a batch of real digits")
    ax.legend(frameon=False)
    return ax.figure


def plot_flat_and_image(image: Any, fig: Figure | None = None) -> Figure:
    """One digit twice: as the flat 784-long row the old loader gave, and reshaped to 28x28."""
    a = np.asarray(image)
    if a.shape not in ((784,), (28, 28)):
        raise ValueError(f"expected one image of shape (784,) or (28, 28), got {a.shape}")
    flat = a.reshape(1, 784)
    if fig is None:
        fig = plt.figure(figsize=(10, 3))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 6], width_ratios=[6, 1.2])
    strip = fig.add_subplot(grid[0, :])
    strip.imshow(flat, aspect="auto", cmap=DIGIT_CMAP)
    strip.set_yticks([])
    strip.set_xticks(range(0, 785, 112))
    strip.set_title("as the network's input arrives: 784 numbers in a row")
    square = fig.add_subplot(grid[1, 1])
    square.imshow(flat.reshape(28, 28), cmap=DIGIT_CMAP)
    square.set_axis_off()
    square.set_title("reshaped to 28 x 28")
    return fig


def _symmetric_limit(values: np.ndarray) -> float:
    limit = float(np.abs(values).max())
    return limit if limit > 0 else 1.0


def plot_filters(kernel: Any, in_channel: int | None = None, n_cols: int = 16,
                 fig: Figure | None = None, title: str | None = None) -> Figure:
    """Every filter of a convolution layer as a small image, on one shared colour scale.

    Blue is a negative weight, red a positive one, white zero; the colour bar gives the values.

    Args:
        kernel: weights (KH, KW, C_in, C_out), e.g. ``model.weights["W_conv1"]``.
        in_channel: which input channel to show when ``C_in > 1`` (the second layer's filters
            each have 32 slices, one per map of the first layer: show one slice at a time).
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4:
        raise ValueError(f"expected convolution weights (KH, KW, C_in, C_out), got shape {k.shape}")
    if in_channel is None:
        if k.shape[2] != 1:
            raise ValueError(f"these filters have {k.shape[2]} input channels: pick one with "
                             f"in_channel=0..{k.shape[2] - 1}")
        in_channel = 0
    if not 0 <= in_channel < k.shape[2]:
        raise ValueError(f"in_channel must be 0..{k.shape[2] - 1}, got {in_channel}")
    slices = k[:, :, in_channel, :]
    limit = _symmetric_limit(slices)
    fig, axes = _grid(k.shape[3], n_cols, fig, panel=0.7)
    for o, ax in enumerate(axes):
        image = ax.imshow(slices[:, :, o], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_axis_off()
    fig.colorbar(image, ax=list(axes), label="weight", shrink=0.8)
    fig.suptitle(title or f"{k.shape[3]} filters of {k.shape[0]}x{k.shape[1]}"
                 + (f", input channel {in_channel}" if k.shape[2] > 1 else ""))
    return fig


def plot_feature_maps(maps: Any, n: int = 16, n_cols: int = 8, fig: Figure | None = None,
                      title: str | None = None) -> Figure:
    """The first ``n`` channels of one image's feature maps, on one shared colour scale.

    Args:
        maps: (H, W, C) or (1, H, W, C), e.g. ``model.stages(x)["relu1"][0]``.
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(f"expected the maps of one image, (H, W, C), got shape {m.shape}: "
                         "pass maps[0] for the first image of a batch")
    n = min(n, m.shape[2])
    shown = m[:, :, :n]
    low, high = float(shown.min()), float(shown.max())
    if low < 0:  # raw convolution outputs: negative blue, positive red
        limit = _symmetric_limit(shown)
        cmap, vmin, vmax = "RdBu_r", -limit, limit
    else:  # after ReLU or pooling: 0 dark, strongest bright
        cmap, vmin, vmax = "viridis", 0.0, high or 1.0
    fig, axes = _grid(n, n_cols, fig, panel=1.0)
    for c, ax in enumerate(axes):
        image = ax.imshow(shown[:, :, c], cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(f"map {c}", fontsize=8)
        ax.set_axis_off()
    fig.colorbar(image, ax=list(axes), label="activation", shrink=0.8)
    fig.suptitle(title or f"{n} of {m.shape[2]} feature maps, {m.shape[0]}x{m.shape[1]} each")
    return fig


def plot_stages(stages: dict[str, Any], names: Sequence[str] = ("conv1", "relu1", "pool1", "conv2", "pool2"),
                n: int = 8, fig: Figure | None = None) -> Figure:
    """One row per stage of the network for one image: its first ``n`` maps, labelled with shape.

    Args:
        stages: from ``model.stages(x)`` for a batch of one image (or any dict of NHWC arrays).
    """
    missing = [s for s in names if s not in stages]
    if missing:
        raise ValueError(f"stages {missing} are not in the dict; it has {list(stages)}")
    if fig is None:
        fig = plt.figure(figsize=(1.1 * n + 1.5, 1.2 * len(names)))
    axes = fig.subplots(len(names), n, squeeze=False)
    for row, name in enumerate(names):
        m = np.asarray(stages[name], dtype=np.float64)
        if m.ndim != 4:
            raise ValueError(f"stage {name!r} has shape {m.shape}; expected (1, H, W, C)")
        m = m[0]
        limit = _symmetric_limit(m[:, :, :n])
        for c in range(n):
            ax = axes[row, c]
            ax.imshow(m[:, :, c], cmap="RdBu_r" if m.min() < 0 else "viridis",
                      vmin=-limit if m.min() < 0 else 0, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{name}\n{m.shape[0]}x{m.shape[1]}x{m.shape[2]}", fontsize=8)
    fig.suptitle(f"The first {n} maps at each stage, for one digit")
    return fig


def plot_kernel_effects(image: Any, kernels: dict[str, Any], fig: Figure | None = None) -> Figure:
    """For each kernel: the kernel, the digit convolved with it, and that map after ReLU."""
    from .numpy_ops import apply_kernel

    img = np.asarray(image, dtype=np.float64)
    if img.shape != (28, 28):
        raise ValueError(f"expected one digit (28, 28), got {img.shape}")
    if not kernels:
        raise ValueError("plot_kernel_effects needs at least one kernel")
    if fig is None:
        fig = plt.figure(figsize=(6, 2 * len(kernels)))
    axes = fig.subplots(len(kernels), 3, squeeze=False)
    for row, (name, kernel) in enumerate(kernels.items()):
        k = np.asarray(kernel, dtype=np.float64)
        out = apply_kernel(img, k)
        limit = _symmetric_limit(k)
        panels = [(k, "RdBu_r", -limit, limit, f"{name} kernel"),
                  (out, "RdBu_r", -_symmetric_limit(out), _symmetric_limit(out), "convolved"),
                  (np.maximum(out, 0), "viridis", 0, max(out.max(), 1e-9), "after ReLU")]
        for ax, (data, cmap, vmin, vmax, label) in zip(axes[row], panels):
            ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(label, fontsize=9)
            ax.set_axis_off()
    return fig


def plot_probabilities(probabilities: Any, labels: Sequence[str] | None = None,
                       ax: Axes | None = None, title: str = "") -> Figure:
    """Bars of a probability vector (e.g. softmax of one digit's logits), the largest in red."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"expected one probability vector, got shape {p.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.6))
    labels = list(labels) if labels is not None else [str(i) for i in range(len(p))]
    colours = ["tab:red" if i == p.argmax() else "tab:blue" for i in range(len(p))]
    ax.bar(labels, p, color=colours)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title)
    return ax.figure


def plot_maps_row(maps: Sequence[Any], titles: Sequence[str], fig: Figure | None = None,
                  cmap: str = "viridis") -> Figure:
    """Several 2-D maps side by side, each with its title and its own size (e.g. before and
    after pooling)."""
    if len(maps) != len(titles) or not maps:
        raise ValueError(f"need one title per map (and at least one map), got {len(maps)} maps "
                         f"and {len(titles)} titles")
    arrays = [np.asarray(m, dtype=np.float64) for m in maps]
    bad = [a.shape for a in arrays if a.ndim != 2]
    if bad:
        raise ValueError(f"every map must be 2-D (H, W), got {bad}")
    if fig is None:
        fig = plt.figure(figsize=(2.6 * len(arrays), 2.8))
    axes = np.atleast_1d(fig.subplots(1, len(arrays)))
    for ax, a, title in zip(axes, arrays, titles):
        ax.imshow(a, cmap=cmap)
        ax.set_title(f"{title}\n{a.shape[0]}x{a.shape[1]}", fontsize=9)
        ax.set_axis_off()
    return fig


def _annotated_grid(ax: Axes, values: np.ndarray, *, shade: np.ndarray | None = None,
                    fmt: str = "{:g}", cmap: str = "Blues") -> None:
    """Draw a small 2-D array as a grid of cells with its numbers written in (helper)."""
    v = np.asarray(values, dtype=np.float64)
    colour = np.abs(v) if shade is None else np.asarray(shade, dtype=np.float64)
    top = colour.max() if colour.size and colour.max() > 0 else 1.0
    ax.imshow(colour, cmap=cmap, vmin=0, vmax=top * 1.6)
    for (r, c), value in np.ndenumerate(v):
        ax.text(c, r, fmt.format(value), ha="center", va="center", fontsize=8)
    ax.hlines(np.arange(-0.5, v.shape[0] + 0.5), -0.5, v.shape[1] - 0.5, color="white", linewidth=1.2)
    ax.vlines(np.arange(-0.5, v.shape[1] + 0.5), -0.5, v.shape[0] - 0.5, color="white", linewidth=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_sliding_window(image: Any, kernel: Any, positions: Sequence[tuple[int, int]], *,
                        padding: int = 1, stride: int = 1, fig: Figure | None = None) -> Figure:
    """The sliding window, frame by frame: padded input, kernel, and the output it fills in.

    One row per output position: on the left the input with its ``padding`` zeros drawn in
    grey and the window outlined in red; in the middle the kernel; on the right the output
    map with the value this window makes outlined, and the values of the earlier frames
    already written in. The title of each row gives the sum of products.

    Args:
        image: one small 2-D image (H, W), e.g. 5 x 5.
        kernel: one 2-D kernel (K, K).
        positions: output positions ``(row, col)``, in the order to show them.
        padding: zeros added on each side of the image.
        stride: how far the window moves between positions.
    """
    from matplotlib.patches import Rectangle

    from .numpy_ops import conv2d_numpy, conv_output_size

    img, k = np.asarray(image, dtype=np.float64), np.asarray(kernel, dtype=np.float64)
    if img.ndim != 2 or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"expected one 2-D image and one square 2-D kernel, got {img.shape} "
                         f"and {k.shape}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding is a number of zeros on each side (0, 1, 2...), got {padding!r}")
    out_h = conv_output_size(img.shape[0], k.shape[0], stride, padding)
    out_w = conv_output_size(img.shape[1], k.shape[1], stride, padding)
    padded = np.pad(img, padding)
    out = conv2d_numpy(padded[None, :, :, None], k[:, :, None, None], stride, "VALID")[0, :, :, 0]
    positions = [tuple(int(v) for v in p) for p in positions]
    bad = [p for p in positions if not (0 <= p[0] < out_h and 0 <= p[1] < out_w)]
    if not positions or bad:
        raise ValueError(f"positions must lie in the {out_h} x {out_w} output, got {bad or 'none'}")
    if fig is None:
        fig = plt.figure(figsize=(8.5, 2.6 * len(positions)))
    axes = fig.subplots(len(positions), 3, squeeze=False,
                        gridspec_kw={"width_ratios": [padded.shape[1], k.shape[1], out_w]})
    is_pad = np.ones_like(padded, dtype=bool)
    is_pad[padding:padding + img.shape[0], padding:padding + img.shape[1]] = False
    for n, (row, (i, j)) in enumerate(zip(axes, positions)):
        shade = np.where(is_pad, 0.35 * max(np.abs(padded).max(), 1.0), np.abs(padded))
        _annotated_grid(row[0], padded, shade=shade, cmap="Greys")
        r0, c0 = i * stride, j * stride
        row[0].add_patch(Rectangle((c0 - 0.5, r0 - 0.5), k.shape[1], k.shape[0], fill=False,
                                   edgecolor="tab:red", linewidth=2.5))
        row[0].set_title(f"input, {padding} zero{'' if padding == 1 else 's'} of padding (grey)"
                         if n == 0 else "")
        _annotated_grid(row[1], k, cmap="Oranges")
        row[1].set_title("kernel" if n == 0 else "")
        done = np.full(out.shape, np.nan)
        for p in positions[:n + 1]:
            done[p] = out[p]
        _annotated_grid(row[2], np.nan_to_num(done), shade=np.nan_to_num(np.abs(done)), cmap="Greens")
        for (r, c) in np.argwhere(np.isnan(done)):
            row[2].texts[r * out_w + c].set_text("")
        row[2].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red",
                                   linewidth=2.5))
        row[2].set_title(f"output[{i}, {j}] = {out[i, j]:g}")
        row[0].set_ylabel(f"window at ({r0}, {c0}):\nsum of {k.size} products", fontsize=9)
    fig.tight_layout()
    return fig


def plot_layer_costs(costs: Sequence[dict[str, Any]], fig: Figure | None = None) -> Figure:
    """Where a network spends its work: multiply-adds, activations and parameters per layer.

    Three bar charts side by side, one bar per layer, each labelled with its share of the
    total, from the rows of :func:`mnist_lessons.numpy_ops.layer_costs` (per image).
    """
    rows = list(costs)
    if not rows or not all({"name", "macs", "activations", "params"} <= set(r) for r in rows):
        raise ValueError("expected the rows of numpy_ops.layer_costs(): dicts with name, macs, "
                         "activations and params")
    names = [r["name"] for r in rows][::-1]
    panels = [("macs", "multiply-adds per image (millions)", 1e6, "tab:blue"),
              ("activations", "values written per image (thousands)", 1e3, "tab:green"),
              ("params", "parameters (millions)", 1e6, "tab:orange")]
    if fig is None:
        fig = plt.figure(figsize=(11, 0.45 * len(rows) + 1.3))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (key, label, unit, colour) in zip(axes, panels):
        values = np.array([r[key] for r in rows][::-1], dtype=np.float64)
        total = values.sum()
        ax.barh(names, values / unit, color=colour)
        for y, v in enumerate(values):
            share = f"{v / total:.0%}" if total else "0%"
            if 0 < v / max(total, 1) < 0.005:
                share = "<1%"
            ax.text(v / unit, y, f" {share}", va="center", fontsize=8)
        ax.set_xlim(0, values.max() / unit * 1.25 if values.max() > 0 else 1)
        ax.set_title(label)
    fig.tight_layout()
    return fig


def plot_value_grids(grids: Sequence[Any], titles: Sequence[str], *, window: int | None = None,
                     fmt: str = "{:g}", fig: Figure | None = None) -> Figure:
    """Small 2-D arrays side by side, numbers written in, non-zero cells shaded.

    With ``window`` the pooling windows (``window x window`` blocks) are outlined, so one
    sees which values share a window, e.g. an input next to the gradient pooling sends back.
    """
    from matplotlib.patches import Rectangle

    arrays = [np.asarray(g, dtype=np.float64) for g in grids]
    if not arrays or len(arrays) != len(titles) or any(a.ndim != 2 for a in arrays):
        raise ValueError(f"need one title per grid and 2-D grids, got {len(arrays)} grids with "
                         f"shapes {[a.shape for a in arrays]} and {len(titles)} titles")
    if fig is None:
        fig = plt.figure(figsize=(2.6 * len(arrays), 2.8))
    axes = np.atleast_1d(fig.subplots(1, len(arrays)))
    for ax, a, title in zip(axes, arrays, titles):
        _annotated_grid(ax, a, fmt=fmt)
        if window:
            for r in range(0, a.shape[0], window):
                for c in range(0, a.shape[1], window):
                    ax.add_patch(Rectangle((c - 0.5, r - 0.5), window, window, fill=False,
                                           edgecolor="black", linewidth=1.5))
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_receptive_fields(image: Any, layers: dict[str, tuple[int, int]], pixel: tuple[int, int],
                          ax: Axes | None = None) -> Figure:
    """A digit with the patch one value sees after each layer drawn as nested squares.

    For each layer (``name: (window, stride)``, in order, ``SAME`` padding) the square is the
    receptive field of the value whose patch is centred nearest ``pixel``
    (:func:`mnist_lessons.numpy_ops.receptive_field_span`); parts of a square outside the
    image lie in the padding.
    """
    from matplotlib.patches import Rectangle

    from .numpy_ops import conv_output_size, receptive_field_span

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or img.shape[0] != img.shape[1]:
        raise ValueError(f"expected one square 2-D image, e.g. (28, 28), got {img.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.imshow(img, cmap=DIGIT_CMAP)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    items, size = list(layers.items()), img.shape[0]
    for n in range(len(items)):
        prefix = [w for _, w in items[:n + 1]]
        length = size
        for window, stride in prefix:
            length = conv_output_size(length, window, stride, "SAME")
        spans = [receptive_field_span(prefix, i, size) for i in range(length)]
        spans_r = min(spans, key=lambda s: abs((s[0] + s[1]) / 2 - pixel[0]))
        spans_c = min(spans, key=lambda s: abs((s[0] + s[1]) / 2 - pixel[1]))
        colour = colours[n % len(colours)]
        ax.add_patch(Rectangle((spans_c[0] - 0.5, spans_r[0] - 0.5), spans_c[1] - spans_c[0] + 1,
                               spans_r[1] - spans_r[0] + 1, fill=False, edgecolor=colour,
                               linewidth=3.0 - 0.5 * n, label=f"{items[n][0]}: {spans_r[1] - spans_r[0] + 1} px"))
    ax.set_xlim(-4.5, size + 3.5)
    ax.set_ylim(size + 3.5, -4.5)
    ax.set_axis_off()
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title("the patch of the digit one value sees")
    return ax.figure


def plot_learning_rate_schedules(schedules: dict[str, tuple[Any, Any]], ax: Axes | None = None,
                                 epoch_steps: int | None = None) -> Figure:
    """Learning rate against training step, one line per schedule (chapter 10).

    Args:
        schedules: name -> ``(steps, rates)``, e.g. from :func:`mnist_lessons.train.learning_rates`.
        epoch_steps: draw a faint vertical line at each epoch boundary when given.
    """
    if not schedules:
        raise ValueError("plot_learning_rate_schedules needs at least one schedule")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.8))
    last = 0
    for name, (steps, rates) in schedules.items():
        steps, rates = np.asarray(steps), np.asarray(rates, dtype=float)
        if steps.shape != rates.shape or steps.ndim != 1:
            raise ValueError(f"schedule {name!r}: steps and rates must be 1-D and of one length")
        ax.plot(steps, rates, label=name)
        last = max(last, int(steps.max()))
    if epoch_steps:
        for x in range(epoch_steps, last, epoch_steps):
            ax.axvline(x, color="0.85", lw=0.8, zorder=0)
    ax.set(xlabel="training step", ylabel="learning rate", title="Learning-rate schedules")
    ax.legend(frameon=False)
    return ax.figure


def plot_shifted_digits(images: Any, shifted: Sequence[Any], titles: Sequence[str] | None = None,
                        fig: Figure | None = None) -> Figure:
    """Real digits in the top row, and below each a few randomly shifted copies (chapter 10).

    Args:
        images: the originals, (N, 28, 28) uint8 or float.
        shifted: a list of batches of the same shape, one row each.
        titles: one label per row below the first (e.g. the random seed).
    """
    originals = check_images(images)
    rows = [originals] + [check_images(s) for s in shifted]
    if any(r.shape != originals.shape for r in rows):
        raise ValueError("every shifted batch must have the shape of the originals, "
                         f"{originals.shape}")
    n = len(originals)
    if fig is None:
        fig = plt.figure(figsize=(1.0 * n + 1.2, 1.0 * len(rows) + 0.3))
    axes = fig.subplots(len(rows), n, squeeze=False)
    names = ["original"] + list(titles or [f"shift {i + 1}" for i in range(len(shifted))])
    for r, (row, name) in enumerate(zip(rows, names)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(row[c], cmap=DIGIT_CMAP)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            # A faint box around the middle 20 x 20 shows how far the digit moved.
            ax.add_patch(matplotlib.patches.Rectangle((3.5, 3.5), 20, 20, fill=False,
                                                      ec="tab:red", lw=0.5, alpha=0.5))
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    return fig


def plot_train_vs_validation(histories: dict[str, Any], fig: Figure | None = None) -> Figure:
    """Accuracy on training images and on validation images, during training, for each run.

    The gap between the two lines of a run is what it memorised rather than learned
    (*overfitting*). Needs histories trained with ``track_training=True``.
    """
    if not histories:
        raise ValueError("plot_train_vs_validation needs at least one history")
    if fig is None:
        fig = plt.figure(figsize=(10, 3.4))
    ax_acc, ax_gap = fig.subplots(1, 2)
    for i, (name, h) in enumerate(histories.items()):
        if not h.training_evaluations or not h.evaluations:
            raise ValueError(f"run {name!r} has no training-set evaluations: train it with "
                             "track_training=True")
        colour = f"C{i}"
        steps_t, acc_t = zip(*h.training_evaluations)
        steps_v, _, acc_v = zip(*h.evaluations)
        ax_acc.plot(steps_t, 100 * np.asarray(acc_t), color=colour, ls="--", label=f"{name}: training")
        ax_acc.plot(steps_v, 100 * np.asarray(acc_v), color=colour, label=f"{name}: validation")
        gap = 100 * (np.asarray(acc_t) - np.asarray(acc_v))
        ax_gap.plot(steps_v, gap, color=colour, label=name)
    ax_acc.set(xlabel="training step", ylabel="accuracy (%)",
               title="Training (dashed) and validation accuracy")
    ax_gap.set(xlabel="training step", ylabel="training minus validation (points)",
               title="The gap: what was memorised")
    ax_gap.axhline(0, color="0.6", lw=0.8)
    for ax in (ax_acc, ax_gap):
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_learning_rate_sweep(sweeps: dict[str, Sequence[Any]], ax: Axes | None = None) -> Figure:
    """Validation accuracy against the learning rate (log scale), one line per optimizer.

    Args:
        sweeps: name -> list of points with ``learning_rate`` and ``validation_accuracy``
            (e.g. :func:`mnist_lessons.checkpoints.learning_rate_sweep`).
    """
    if not sweeps:
        raise ValueError("plot_learning_rate_sweep needs at least one sweep")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    for name, points in sweeps.items():
        if not points:
            raise ValueError(f"sweep {name!r} has no points")
        rates = np.array([p.learning_rate for p in points])
        acc = 100 * np.array([p.validation_accuracy for p in points])
        line, = ax.plot(rates, acc, marker="o", label=name)
        best = int(np.argmax(acc))
        ax.annotate(f"{acc[best]:.1f}%", (rates[best], acc[best]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8, color=line.get_color())
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (log scale)", ylabel="validation accuracy (%)",
           title="Accuracy after the same short budget, by learning rate")
    ax.legend(frameon=False)
    return ax.figure


def plot_reliability_diagram(table: Any, ax: Axes | None = None) -> Figure:
    """Reliability diagram: accuracy of each confidence bin (bars) against the diagonal of a
    calibrated network, each bar labelled with how many answers it holds.

    ``table`` is a :class:`mnist_lessons.evaluate.ReliabilityTable`. Bars below the diagonal
    mean over-confidence (sure, but wrong more often than it says).
    """
    edges = np.asarray(table.edges, dtype=np.float64)
    counts = np.asarray(table.counts)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.2))
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    filled = counts > 0
    ax.bar(centres[filled], np.asarray(table.accuracy)[filled], width=widths[filled] * 0.9,
           color="tab:blue", label="accuracy in the bin")
    ax.plot(np.asarray(table.confidence)[filled], np.asarray(table.confidence)[filled], "o",
            color="tab:orange", markersize=4, label="mean confidence in the bin")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="calibrated")
    for x, y, n in zip(centres[filled], np.asarray(table.accuracy)[filled], counts[filled]):
        ax.text(x, min(y, 1.0) + 0.02, f"{n:,}", ha="center", fontsize=7, rotation=90)
    ax.set(xlim=(0, 1), ylim=(0, 1.12), xlabel="confidence (largest probability)",
           ylabel="share right", title="Reliability diagram (counts above the bars)")
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    return ax.figure


def plot_confidence_histogram(confidence: Any, correct: Any, ax: Axes | None = None,
                              bins: int = 20) -> Figure:
    """Histograms of the confidence of the right and of the wrong answers, log count scale
    (the right answers outnumber the wrong ones a hundred to one)."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if c.shape != ok.shape or c.ndim != 1:
        raise ValueError(f"expected confidence and correct of the same 1D shape, got {c.shape} "
                         f"and {ok.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    edges = np.linspace(0, 1, bins + 1)
    ax.hist(c[ok], bins=edges, color="tab:blue", alpha=0.7, label=f"right ({ok.sum():,})")
    ax.hist(c[~ok], bins=edges, color="tab:red", alpha=0.7, label=f"wrong ({(~ok).sum():,})")
    ax.set_yscale("log")
    ax.set(xlabel="confidence (largest probability)", ylabel="answers (log scale)",
           title="How sure the network was, right and wrong")
    ax.legend(frameon=False, loc="upper left")
    return ax.figure


def plot_saliency(images: Any, maps: dict[str, Any], titles: Sequence[str] | None = None,
                  fig: Figure | None = None) -> Figure:
    """One column per digit: the digit, then one row per saliency map (e.g. ``{"gradient":
    (N, 28, 28), "occlusion": (N, 28, 28)}``), each in a diverging scale centred on 0 (red:
    raises the answer's score, blue: lowers it)."""
    imgs = check_images(images)
    rows = {name: np.asarray(m, dtype=np.float64) for name, m in maps.items()}
    bad = {name: m.shape for name, m in rows.items() if m.shape != imgs.shape}
    if bad:
        raise ValueError(f"every map must have the images' shape {imgs.shape}, got {bad}")
    n = len(imgs)
    if fig is None:
        fig = plt.figure(figsize=(1.4 * n + 0.8, 1.45 * (len(rows) + 1)))
    axes = np.asarray(fig.subplots(len(rows) + 1, n, squeeze=False))
    for j in range(n):
        axes[0, j].imshow(imgs[j], cmap=DIGIT_CMAP)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
        for i, (name, m) in enumerate(rows.items(), start=1):
            limit = float(np.abs(m[j]).max()) or 1.0
            axes[i, j].imshow(m[j], cmap="RdBu_r", vmin=-limit, vmax=limit)
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
