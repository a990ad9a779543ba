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
    """Loss per step (log scale, smoothed) and test accuracy, one line per run.

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
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("Test accuracy")
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
