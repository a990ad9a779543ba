"""Export the shipped course model for the browser: the live panel of the published book.

    python -m mnist_lessons.tools.web_model --out DIR

writes three files into ``DIR`` (the book build runs it through ``book/_ext/live_panel.py``, so
the weights are never committed and always come from the current shipped model):

``model.json``
    the manifest: where each tensor lies in ``model.bin`` (name, dtype, shape, byte offset), the
    SHA-256 of the course model it came from, the real test digits shipped for the reader to pick,
    and the *measured* test accuracy (10,000 real MNIST test images) of the network with the
    quantised FC layer next to the float32 one, so the page states both.
``model.bin``
    the tensors, little-endian, one after the other (each starts at a multiple of 4 bytes).
``live-static.png``
    a static figure of the network on one test digit, for readers without JavaScript.

Why the FC layer is quantised, and how. The 3136 x 1024 weights of the FC layer are 3.2 million
of the network's 3.3 million: 12.8 MB in float32. The page must stay under 4 MB in all, and the
book's theme alone (scripts, styles, icons) transfers about 0.8 MB compressed (2.3 MB raw), so
the weights get about 3 MB. Measured here on the full test set, one scale per output unit ``j``
(``q[:, j] = round(W[:, j] / s_j)``, ``s_j = max|W[:, j]| / L``, every weight off by at most
``s_j / 2``; the browser computes ``s_j * sum_i x_i q_ij``):

* float16 (2 bytes a weight): 6.4 MB, over the budget on its own;
* int8 (``L = 127``): 3.2 MB, with the rest of the page about 4.3 MB, still over;
* int4 (``L = 7``, two weights a byte): 1.6 MB.

Each is stored in the manifest with its test accuracy; the page ships :data:`SHIPPED_BITS`
(int4), whose accuracy loss against float32 is checked to be at most
:data:`MAX_ACCURACY_LOSS_POINTS` points. The small layers (conv1, conv2, the output layer,
every bias: 0.25 MB) stay float32. The weights in the course model's file are float32 even
though it was *trained* in bfloat16: mixed precision multiplies in bfloat16 but keeps and
updates float32 master weights, and those are what the file holds (the manifest records the
dtypes found in the file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped when the layout of ``model.json`` / ``model.bin`` changes (the page checks it).
WEB_FORMAT = 1
#: Test digits shipped with the weights for the reader to pick: the first of each class.
N_SAMPLES_PER_CLASS = 1
#: Bits per FC weight in the file the page downloads (4 or 8); the page's 4 MB budget decides.
SHIPPED_BITS = 4
#: The accuracy the quantised network may lose against float32, in percentage points.
MAX_ACCURACY_LOSS_POINTS = 0.05


def quantise_per_unit(weights: Any, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric quantisation of a dense layer's weights to ``bits`` bits, one scale per output unit.

    Args:
        weights: (inputs, outputs) float, e.g. the FC layer's (3136, 1024).
        bits: 8 (levels -127..127) or 4 (levels -7..7).

    Returns:
        ``(q, scale)``: ``q`` int8 of shape (outputs, inputs), one row per output unit (the
        order the browser reads them, so each unit's dot product runs over contiguous memory),
        values in ``[-L, L]`` with ``L = 2**(bits - 1) - 1``; ``scale`` float32 (outputs,),
        ``max|W[:, j]| / L`` (1 for a unit whose weights are all zero). ``W[:, j] ~ scale[j] *
        q[j]``, off by at most ``scale[j] / 2``.
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8 (the browser reads those), got {bits!r}")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or not np.all(np.isfinite(w)):
        raise ValueError(f"expected finite dense-layer weights (inputs, outputs), got shape "
                         f"{w.shape}")
    top = 2 ** (bits - 1) - 1
    peak = np.abs(w).max(axis=0)
    scale = np.where(peak > 0, peak / top, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.astype(np.float64)), -top, top).astype(np.int8)
    return np.ascontiguousarray(q.T), scale


def dequantise_per_unit(q: Any, scale: Any) -> np.ndarray:
    """The float32 weights (inputs, outputs) that ``(q, scale)`` from :func:`quantise_per_unit`
    stand for: ``W[i, j] = q[j, i] * scale[j]``."""
    q, scale = np.asarray(q), np.asarray(scale, dtype=np.float32)
    if q.ndim != 2 or scale.shape != (q.shape[0],):
        raise ValueError(f"need q (outputs, inputs) and scale (outputs,), got {q.shape} and "
                         f"{scale.shape}")
    return np.ascontiguousarray((q.astype(np.float32) * scale[:, None]).T)


def pack_int4(q: Any) -> np.ndarray:
    """Two 4-bit values per byte: (rows, n) int8 in [-7, 7] -> (rows, ceil(n / 2)) uint8.

    Byte ``k`` of a row holds value ``2k`` in its low half and value ``2k + 1`` in its high
    half, each stored as ``q + 8`` (1 to 15); an odd row is padded with a zero.
    """
    q = np.asarray(q)
    if q.ndim != 2 or q.size and (q.min() < -7 or q.max() > 7):
        raise ValueError("pack_int4 needs a 2D array of integers in [-7, 7]")
    if q.shape[1] % 2:
        q = np.pad(q, ((0, 0), (0, 1)))
    u = (q.astype(np.int16) + 8).astype(np.uint8)
    return np.ascontiguousarray(u[:, 0::2] | (u[:, 1::2] << 4))


def _pack(tensors: list[tuple[str, np.ndarray, str]]) -> tuple[bytes, list[dict[str, Any]]]:
    """Concatenate arrays little-endian, each at a multiple of 4 bytes; describe each one."""
    blob, index = bytearray(), []
    for name, array, note in tensors:
        array = np.ascontiguousarray(array)
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        index.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape),
                      "offset": len(blob), "bytes": len(data), "note": note})
        blob += data + b"\0" * (-len(data) % 4)
    return bytes(blob), index


def _fc_variants(model: Any, data: Any, w_fcs: dict[str, np.ndarray]) -> dict[str, tuple[float, np.ndarray]]:
    """Test accuracy and logits (10,000, 10) of ``model`` with each FC weight matrix of ``w_fcs``.

    Only the FC layer differs between the variants, so the layers before it (the convolutions,
    four fifths of the arithmetic) run once, in batches of 1,000 as ``predict_logits`` runs
    them, and each variant runs the FC and output layers on their outputs.
    """
    import tensorflow as tf

    from ..evaluate import accuracy, stage_outputs

    flat = stage_outputs(model, data.x_test, "flat")
    head = tf.function(lambda x, w: model.head(x, W_fc=w)[2])  # dropout off: inference
    out = {}
    for name, w_fc in w_fcs.items():
        w = tf.constant(w_fc, tf.float32)
        logits = np.concatenate([head(tf.constant(flat[i:i + 1000]), w).numpy()
                                 for i in range(0, len(flat), 1000)])
        out[name] = (accuracy(logits.argmax(axis=1), data.y_test), logits)
    return out


def _static_figure(model: Any, image: np.ndarray, label: int, path: Path) -> None:
    """The network on one digit, for the page's no-JavaScript note: input, 8 conv1 maps,
    8 conv2 maps and the ten probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..numpy_ops import softmax_stable

    stages = model.stages(image[None].astype(np.float32) / 255.0)
    conv1, conv2 = stages["relu1"].numpy()[0], stages["relu2"].numpy()[0]
    probs = softmax_stable(stages["logits"].numpy())[0]
    fig = plt.figure(figsize=(9, 3.2), dpi=100)
    grid = fig.add_gridspec(2, 12)
    ax = fig.add_subplot(grid[:, 0:2])
    ax.imshow(image, cmap="gray")
    ax.set_title(f"input (a {label})", fontsize=9)
    ax.axis("off")
    for k in range(8):
        for row, (maps, name) in enumerate(((conv1, "conv1"), (conv2, "conv2"))):
            a = fig.add_subplot(grid[row, 2 + k])
            a.imshow(maps[:, :, k], cmap="magma")
            a.axis("off")
            if k == 0:
                a.set_title(f"{name} maps 0-7", fontsize=8, loc="left")
    a = fig.add_subplot(grid[:, 10:12])
    a.barh(range(10), probs, color="#3b6ea5")
    a.set_yticks(range(10))
    a.invert_yaxis()
    a.set_xlim(0, 1)
    a.set_title("probabilities", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_shipped_weights() -> tuple[Any, dict[str, Any], str]:
    """The course model exactly as shipped (``course_model.npz``), its SHA-256 checked against
    its record: ``(model, settings it was trained with, SHA-256)``. Only the weights are read
    (not the training history).

    Unlike :func:`mnist_lessons.checkpoints.load_course_model` this does not refuse a model whose
    training code has since changed: the page shows the network the book ships, and whether
    that file is up to date with the training code is the course model's own test's business.
    """
    from ..checkpoints import COURSE_MODEL_FILE, ModelCacheError, course_model_record
    from ..model import ArticleCNN, Hyperparameters

    record = course_model_record()
    blob = COURSE_MODEL_FILE.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != record["sha256"]:
        raise ModelCacheError(f"The course model {COURSE_MODEL_FILE} has SHA-256 {digest}, not "
                              f"the recorded {record['sha256']}: it is damaged; reinstall "
                              "mnist_lessons.", "shipped file damaged")
    with np.load(COURSE_MODEL_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k.startswith(("weights/", "biases/"))}
        saved = json.loads(str(npz["settings"]))
    model = ArticleCNN(Hyperparameters(**saved["hyperparameters"]))
    model.set_weights(arrays)
    return model, saved, digest


def export_web_model(out_dir: str | Path, verbose: bool = False) -> dict[str, Any]:
    """Write ``model.json``, ``model.bin`` and ``live-static.png`` for the live panel.

    Loads the shipped course model (:func:`load_shipped_weights`),
    quantises its FC layer per output unit, measures the test accuracy of the float32, float16,
    int8 and int4 networks on the 10,000 real MNIST test images, and refuses to export when the
    shipped one (:data:`SHIPPED_BITS`) loses more than :data:`MAX_ACCURACY_LOSS_POINTS` points.

    Returns:
        the manifest written to ``model.json``.
    """
    from ..data import load_mnist

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder, but {out} is a file: pass a folder path "
                         "(it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    data = load_mnist()
    model, trained_with, model_sha256 = load_shipped_weights()
    weights = {k: np.asarray(v) for k, v in model.get_weights().items()}
    w_fc = weights["weights/W_fc"]
    stored_dtypes = sorted({v.dtype.name for v in weights.values()})

    quantised = {bits: quantise_per_unit(w_fc, bits) for bits in (8, 4)}
    variants = _fc_variants(model, data, {
        "float32": w_fc, "float16": w_fc.astype(np.float16).astype(np.float32),
        **{f"int{bits}": dequantise_per_unit(*quantised[bits]) for bits in (8, 4)}})
    acc32, logits32 = variants.pop("float32")
    accuracy = {"float32": acc32, **{k: acc for k, (acc, _) in variants.items()}}
    logits = {k: v for k, (_, v) in variants.items()}
    # the static figure shows the shipped network
    model.set_weights({**weights, "weights/W_fc": dequantise_per_unit(*quantised[SHIPPED_BITS])})
    shipped = f"int{SHIPPED_BITS}"
    loss_points = 100 * (acc32 - accuracy[shipped])
    if loss_points > MAX_ACCURACY_LOSS_POINTS:
        raise RuntimeError(f"{SHIPPED_BITS}-bit quantisation of the FC layer costs "
                           f"{loss_points:.3f} points of test accuracy (over "
                           f"{MAX_ACCURACY_LOSS_POINTS}): ship more bits (SHIPPED_BITS)")
    q, scale = quantised[SHIPPED_BITS]
    fc_tensor = (("fc/kernel_int4", pack_int4(q), "two weights a byte, one row of 1568 bytes per "
                  "output unit: byte k holds input 2k (low 4 bits) and 2k+1 (high 4 bits), "
                  "each as q + 8; W_fc[i, j] = q[j, i] * scale[j]")
                 if SHIPPED_BITS == 4 else
                 ("fc/kernel_int8", q, "one row per output unit: W_fc[i, j] = q[j, i] * scale[j]"))

    labels = data.y_test
    picks = [int(i) for d in range(10) for i in np.flatnonzero(labels == d)[:N_SAMPLES_PER_CLASS]]
    blob, index = _pack([
        ("conv1/kernel", weights["weights/W_conv1"], "HWIO (5, 5, 1, 32), as in the npz"),
        ("conv1/bias", weights["biases/b_conv1"], ""),
        ("conv2/kernel", weights["weights/W_conv2"], "HWIO (5, 5, 32, 64), as in the npz"),
        ("conv2/bias", weights["biases/b_conv2"], ""),
        fc_tensor,
        ("fc/scale", scale, "float32 scale of each output unit"),
        ("fc/bias", weights["biases/b_fc"], ""),
        ("out/kernel", weights["weights/out"], "(1024, 10)"),
        ("out/bias", weights["biases/out"], ""),
        ("samples/images", data.x_test[picks], "uint8 0-255, real MNIST test digits"),
    ])
    (out / "model.bin").write_bytes(blob)
    err = np.abs(w_fc.astype(np.float64) - dequantise_per_unit(q, scale).astype(np.float64))
    manifest = {
        "format": WEB_FORMAT,
        "command": "python -m mnist_lessons.tools.web_model --out DIR",
        "course_model_sha256": model_sha256,
        "trained_precision": trained_with["hyperparameters"]["precision"],
        "stored_weight_dtypes": stored_dtypes,
        "fc_bits": SHIPPED_BITS,
        "fc_quantisation": f"int{SHIPPED_BITS} per output unit (symmetric, levels "
                           f"-{2 ** (SHIPPED_BITS - 1) - 1}..{2 ** (SHIPPED_BITS - 1) - 1}, "
                           f"scale = max|w| / {2 ** (SHIPPED_BITS - 1) - 1})",
        "binary": "model.bin",
        "binary_bytes": len(blob),
        "fc_bytes": {"float32": int(w_fc.size * 4), "float16": int(w_fc.size * 2),
                     "int8": int(w_fc.size + scale.nbytes), "int4": int(w_fc.size // 2 + scale.nbytes)},
        "test_images": int(len(labels)),
        "test_accuracy": accuracy,
        "shipped": shipped,
        "accuracy_loss_points": loss_points,
        "predictions_changed": {k: int((v.argmax(1) != logits32.argmax(1)).sum())
                                for k, v in logits.items()},
        "max_logit_change": {k: float(np.abs(v - logits32).max()) for k, v in logits.items()},
        "max_weight_error": float(err.max()),
        "max_weight_error_in_scales": float((err / scale[None, :]).max()),
        "tensors": index,
        "samples": {"test_indices": picks, "labels": [int(labels[i]) for i in picks]},
        "static_figure": "live-static.png",
    }
    (out / "model.json").write_text(json.dumps(manifest, indent=1) + "\n")
    _static_figure(model, data.x_test[picks[7]], int(labels[picks[7]]), out / "live-static.png")
    if verbose:
        print(f"wrote {out / 'model.bin'} ({len(blob) / 1e6:.2f} MB) and model.json: test "
              "accuracy " + ", ".join(f"{k} {v:.2%}" for k, v in accuracy.items()))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_lessons.tools.web_model",
        description="Export the shipped course model's weights for the book's live panel.")
    parser.add_argument("--out", required=True, help="folder to write model.json, model.bin and "
                        "live-static.png into (created if missing)")
    args = parser.parse_args(argv)
    try:
        export_web_model(args.out, verbose=True)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
