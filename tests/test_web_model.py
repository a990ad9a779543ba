"""The browser export of the course model (python -m mnist_lessons.tools.web_model).

Oracles: the shipped course model's file read with NumPy (the exported tensors must be its
arrays, the quantised layer within half a step of them), its record course_model.json (the
float32 accuracy), hand-worked quantisation examples, the real MNIST test set (the sample digits
and their labels), and Keras, which recomputes the quantised network's accuracy from the bytes
of model.bin.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_lessons.checkpoints import COURSE_MODEL_FILE
from mnist_lessons.tools.web_model import (MAX_ACCURACY_LOSS_POINTS, SHIPPED_BITS,
                                           dequantise_per_unit, pack_int4, quantise_per_unit)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.after_build  # reuses the build's export when this session builds


@pytest.fixture(scope="module")
def course_arrays() -> dict[str, np.ndarray]:
    with np.load(COURSE_MODEL_FILE) as npz:
        return {k: npz[k] for k in npz.files if k.startswith(("weights/", "biases/"))}


def _build_export(build: Path | None) -> Path | None:
    """The export a book build made for the current course model and exporter (the build runs
    the same command line and keeps its output under ``_build/.live_panel/<key>/``), if there
    is one: in ``build`` (this session's), or in ``_build`` here."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from live_panel import cache_key
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    for folder in filter(None, [build, ROOT / "_build"]):
        live = folder / ".live_panel" / cache_key() / "live"
        if (live / "model.json").is_file():
            return live
    return None


@pytest.fixture(scope="module")
def exported(tmp_path_factory, finished_build) -> Path:
    """One export, by the command line the book build runs (about 30 s: three accuracies); the
    build's own when the book was built for this course model and exporter."""
    found = _build_export(finished_build)
    if found is not None:
        return found
    out = tmp_path_factory.mktemp("web") / "live"
    done = subprocess.run([sys.executable, "-m", "mnist_lessons.tools.web_model", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test accuracy float32" in done.stdout
    return out


@pytest.fixture(scope="module")
def manifest(exported) -> dict:
    return json.loads((exported / "model.json").read_text())


def _tensors(exported: Path, manifest: dict) -> dict[str, np.ndarray]:
    blob = (exported / manifest["binary"]).read_bytes()
    return {t["name"]: np.frombuffer(blob, dtype=t["dtype"], count=int(np.prod(t["shape"])),
                                     offset=t["offset"]).reshape(t["shape"])
            for t in manifest["tensors"]}


def test_quantise_per_unit_by_hand():
    w = np.array([[1.0, -0.5], [0.6, 0.3], [-0.2, 0.0]])   # 3 inputs, 2 units
    q, scale = quantise_per_unit(w, bits=8)
    np.testing.assert_allclose(scale, [1 / 127, 0.5 / 127], rtol=1e-7)
    # unit 0, step 1/127: 1 -> 127, 0.6 -> 76.2 -> 76, -0.2 -> -25.4 -> -25
    # unit 1, step 0.5/127: -0.5 -> -127, 0.3 -> 76.2 -> 76, 0 -> 0
    np.testing.assert_array_equal(q, [[127, 76, -25], [-127, 76, 0]])
    q4, scale4 = quantise_per_unit(w, bits=4)
    # step 1/7: 0.6 -> 4.2 -> 4, -0.2 -> -1.4 -> -1; step 0.5/7: 0.3 -> 4.2 -> 4
    np.testing.assert_array_equal(q4, [[7, 4, -1], [-7, 4, 0]])
    np.testing.assert_allclose(dequantise_per_unit(q4, scale4)[:, 0], [1.0, 4 / 7, -1 / 7], rtol=1e-6)


def test_a_unit_of_zeros_keeps_zeros_and_a_finite_scale():
    q, scale = quantise_per_unit(np.zeros((4, 3)), bits=4)
    assert not q.any() and np.all(scale == 1)


def test_pack_int4_puts_even_inputs_low_and_odd_inputs_high():
    packed = pack_int4(np.array([[-7, 7, 0, -1, 3]], np.int8))   # odd length: padded with 0
    # bytes: (-7+8) | (7+8) << 4 = 1 | 240 = 241;  8 | 7 << 4 = 120;  11 | 8 << 4 = 139
    np.testing.assert_array_equal(packed, [[241, 120, 139]])


def test_bad_weights_and_bits_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        quantise_per_unit(np.ones((2, 2)), bits=3)
    with pytest.raises(ValueError, match=r"\(inputs, outputs\)"):
        quantise_per_unit(np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        quantise_per_unit(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"\[-7, 7\]"):
        pack_int4(np.array([[8]]))


def test_out_must_be_a_folder(tmp_path):
    a_file = tmp_path / "model.json"
    a_file.write_text("{}")
    done = subprocess.run([sys.executable, "-m", "mnist_lessons.tools.web_model", "--out", str(a_file)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--out must be a folder" in done.stderr and "Traceback" not in done.stderr


def test_exported_small_layers_are_the_course_models_arrays(exported, manifest, course_arrays):
    t = _tensors(exported, manifest)
    for name, key in [("conv1/kernel", "weights/W_conv1"), ("conv1/bias", "biases/b_conv1"),
                      ("conv2/kernel", "weights/W_conv2"), ("conv2/bias", "biases/b_conv2"),
                      ("fc/bias", "biases/b_fc"), ("out/kernel", "weights/out"), ("out/bias", "biases/out")]:
        np.testing.assert_array_equal(t[name], course_arrays[key], err_msg=name)
    assert manifest["stored_weight_dtypes"] == ["float32"]
    assert manifest["trained_precision"] == "bfloat16"


def test_exported_fc_weights_are_within_half_a_step_of_the_course_models(exported, manifest, course_arrays):
    t = _tensors(exported, manifest)
    assert SHIPPED_BITS == 4 and manifest["fc_bits"] == 4
    packed = t["fc/kernel_int4"].astype(np.int16)
    assert packed.shape == (1024, 1568)
    q = np.empty((1024, 3136))
    q[:, 0::2], q[:, 1::2] = (packed & 15) - 8, (packed >> 4) - 8
    assert q.min() >= -7 and q.max() <= 7
    scale = t["fc/scale"].astype(np.float64)
    w = course_arrays["weights/W_fc"].astype(np.float64)       # (3136, 1024)
    np.testing.assert_allclose(scale, np.abs(w).max(axis=0) / 7, rtol=1e-6)
    assert (np.abs(q).max(axis=1) == 7).all(), "each unit's largest weight is level 7"
    error = np.abs(w - (q * scale[:, None]).T)
    assert (error <= scale[None, :] / 2 * (1 + 1e-5)).all()
    assert manifest["max_weight_error_in_scales"] <= 0.5 + 1e-5


def test_manifest_describes_a_binary_under_2_mb_with_real_test_digits(exported, manifest, mnist):
    blob = (exported / "model.bin").read_bytes()
    assert manifest["binary_bytes"] == len(blob) < 2_000_000
    ends = [t["offset"] + t["bytes"] for t in manifest["tensors"]]
    assert all(t["offset"] % 4 == 0 for t in manifest["tensors"]) and max(ends) <= len(blob)
    assert manifest["fc_bytes"] == {"float32": 3136 * 1024 * 4, "float16": 3136 * 1024 * 2,
                                    "int8": 3136 * 1024 + 4096, "int4": 3136 * 512 + 4096}
    picks = manifest["samples"]["test_indices"]
    assert manifest["samples"]["labels"] == list(range(10))
    assert picks == [int(np.flatnonzero(mnist.y_test == d)[0]) for d in range(10)]
    np.testing.assert_array_equal(_tensors(exported, manifest)["samples/images"], mnist.x_test[picks])
    assert (exported / manifest["static_figure"]).stat().st_size > 10_000


def test_accuracies_are_measured_and_quantisation_costs_at_most_005_points(exported, manifest, mnist):
    record = json.loads((ROOT / "mnist_lessons" / "course_model.json").read_text())
    acc = manifest["test_accuracy"]
    assert manifest["test_images"] == 10_000
    assert acc["float32"] == record["test_accuracy"]
    assert 100 * (acc["float32"] - acc["int4"]) <= MAX_ACCURACY_LOSS_POINTS
    assert manifest["accuracy_loss_points"] == pytest.approx(100 * (acc["float32"] - acc["int4"]))
    # Keras recomputes the shipped network's accuracy from the bytes of model.bin
    from mnist_lessons.model import build_keras_model

    t = _tensors(exported, manifest)
    packed = t["fc/kernel_int4"].astype(np.int16)
    q = np.empty((1024, 3136), np.float32)
    q[:, 0::2], q[:, 1::2] = (packed & 15) - 8, (packed >> 4) - 8
    keras_model = build_keras_model()
    for layer, w, b in [("conv1", t["conv1/kernel"], t["conv1/bias"]), ("conv2", t["conv2/kernel"], t["conv2/bias"]),
                        ("fc", (q * t["fc/scale"][:, None]).T, t["fc/bias"]), ("out", t["out/kernel"], t["out/bias"])]:
        keras_model.get_layer(layer).set_weights([np.asarray(w), np.asarray(b)])
    logits = keras_model.predict(mnist.x_test[..., None].astype(np.float32) / 255, batch_size=1000, verbose=0)
    assert (logits.argmax(1) == mnist.y_test).mean() == acc["int4"]


def test_page_quotes_only_figures_the_extension_knows():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from live_panel import FIGURES
    finally:
        sys.path.pop(0)
    tokens = set(re.findall(r"%%live:(\w+)%%", (ROOT / "book" / "live_network.md").read_text()))
    assert tokens and tokens <= set(FIGURES)
