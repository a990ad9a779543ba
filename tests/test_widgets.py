"""mnist_lessons.widgets: the functions behind the explorers, and the callbacks themselves."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from mnist_lessons import widgets
from mnist_lessons.model import ArticleCNN
from mnist_lessons.numpy_ops import HAND_KERNELS, apply_kernel


def test_parse_kernel_reads_rows_and_explains_mistakes():
    k = widgets.parse_kernel("0 -1 0\n-1, 5, -1\n 0 -1 0 \n")
    np.testing.assert_array_equal(k, HAND_KERNELS["sharpen"])
    assert widgets.parse_kernel("\n".join(["1 1 1 1 1"] * 5)).shape == (5, 5)
    with pytest.raises(ValueError, match="must be a number"):
        widgets.parse_kernel("1 2 x\n1 2 3\n1 2 3")
    with pytest.raises(ValueError, match="same number of values"):
        widgets.parse_kernel("1 2 3\n1 2\n1 2 3")
    with pytest.raises(ValueError, match="3x3 or 5x5"):
        widgets.parse_kernel("1 2\n3 4")
    with pytest.raises(ValueError, match="as text"):
        widgets.parse_kernel([[1, 2, 3]])


def test_kernel_response_is_the_scaled_convolution_and_its_relu(mnist):
    out, relu = widgets.kernel_response(mnist.x_test[0], HAND_KERNELS["vertical edges"])
    np.testing.assert_allclose(out, apply_kernel(mnist.x_test[0] / 255.0, HAND_KERNELS["vertical edges"]))
    assert out.min() < 0 and relu.min() == 0 and np.array_equal(relu, np.maximum(out, 0))


def test_pool_map_shapes_follow_window_and_stride():
    m = np.arange(28 * 28, dtype=float).reshape(28, 28)
    assert widgets.pool_map(m, 2, 2).shape == (14, 14)
    assert widgets.pool_map(m, 3, 3).shape == (10, 10)
    assert widgets.pool_map(m, 2, 2)[0, 0] == m[:2, :2].max()
    assert widgets.pool_map(m, 2, 2, "avg")[0, 0] == m[:2, :2].mean()
    with pytest.raises(ValueError, match="1 to 8"):
        widgets.pool_map(m, 0, 2)


def test_softmax_temperature_sharpens_and_flattens():
    z = np.array([2.0, 1.0, 0.0])
    cold, warm = widgets.softmax_with_temperature(z, 0.1), widgets.softmax_with_temperature(z, 10)
    assert cold.max() > 0.99 and warm.max() < 0.4
    np.testing.assert_allclose(widgets.softmax_with_temperature(z, 1.0).sum(), 1.0)
    with pytest.raises(ValueError, match="positive"):
        widgets.softmax_with_temperature(z, 0)


def test_network_view_returns_maps_prediction_and_probabilities(mnist):
    import tensorflow as tf

    model = ArticleCNN()
    maps, predicted, probs = widgets.network_view(model, mnist.x_test[0], "pool1")
    x = mnist.x_test[:1].astype(np.float32) / 255.0
    assert maps.shape == (14, 14, 32)
    np.testing.assert_allclose(maps, model.stages(x)["pool1"].numpy()[0], rtol=1e-6)
    expected = tf.nn.softmax(model(x)).numpy()[0]  # TensorFlow's softmax of the same digit
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    assert probs.shape == (10,) and probs.sum() == pytest.approx(1.0)
    assert predicted == int(np.argmax(expected))
    with pytest.raises(ValueError, match="layer must be one of"):
        widgets.network_view(model, mnist.x_test[0], "fc")


def test_kernel_explorer_redraws_when_a_control_changes(mnist):
    box = widgets.kernel_explorer(mnist.x_test[:5])
    index, preset, typed = box.children[0].children
    first = box.figure
    assert first is not None and len(first.axes) == 4
    index.value = 3
    assert box.figure is not first
    np.testing.assert_array_equal(box.figure.axes[0].get_images()[0].get_array(), mnist.x_test[3])
    preset.value = "typed below"
    typed.value = "1 2\n3 4"          # a mistake: the explorer says so instead of crashing
    assert "3x3 or 5x5" in box.error
    typed.value = "0 0 0\n0 1 0\n0 0 0"
    assert box.error is None


def test_feature_map_browser_follows_digit_and_layer(mnist):
    box = widgets.feature_map_browser(ArticleCNN(), mnist.x_test[:4], mnist.y_test[:4], n_maps=8)
    index, layer = box.children[0].children
    assert "relu1: 28x28x32 | true 7" in box.figure._suptitle.get_text()
    layer.value = "pool2"
    assert "pool2: 7x7x64" in box.figure._suptitle.get_text()
    index.value = 1
    assert "true 2" in box.figure._suptitle.get_text()


def test_pooling_explorer_and_temperature_slider_redraw(mnist):
    box = widgets.pooling_explorer(mnist.x_test[0] / 255.0)
    window, stride, mode = box.children[0].children
    assert box.figure.axes[1].get_images()[0].get_array().shape == (14, 14)
    stride.value = 1
    assert box.figure.axes[1].get_images()[0].get_array().shape == (28, 28)
    slider = widgets.softmax_temperature_slider(np.array([3.0, 1.0, 0.2, 0, 0, 0, 0, 0, 0, 0]))
    (temperature,) = slider.children[0].children
    sharp = max(p.get_height() for p in slider.figure.axes[0].patches)
    temperature.value = 10.0
    assert max(p.get_height() for p in slider.figure.axes[0].patches) < sharp
    with pytest.raises(ValueError, match="one image"):
        widgets.softmax_temperature_slider(np.zeros((2, 10)))


NOW = dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc)  # an upload's time stamp (ipywidgets 8 sends one)


def _png_bytes(picture: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploaded_bytes_reads_the_value_of_ipywidgets_7_and_8():
    content = b"\x89PNG fake"
    # ipywidgets 8 (documented): a tuple of dicts, "content" a memoryview
    v8 = ({"name": "seven.png", "type": "image/png", "size": 9, "content": memoryview(content)},)
    # ipywidgets 7.7 (Colab's): a dict from the file name to {"metadata": ..., "content": bytes}
    v7 = {"seven.png": {"metadata": {"name": "seven.png", "type": "image/png"}, "content": content}}
    assert widgets.uploaded_bytes(v8) == widgets.uploaded_bytes(v7) == content
    with pytest.raises(ValueError, match="upload one picture"):
        widgets.uploaded_bytes(())
    with pytest.raises(ValueError, match="upload one picture"):
        widgets.uploaded_bytes(v8 * 2)
    with pytest.raises(ValueError, match="FileUpload value"):
        widgets.uploaded_bytes(({"name": "x"},))


def test_digit_upload_reads_a_photographed_test_digit_and_explains_a_bad_file(mnist):
    """A real test digit, saved as a dark-on-light PNG three times its size (as a photo of ink on
    paper would be), goes through the widget's own callback: the course model reads its label."""
    from mnist_lessons.checkpoints import load_course_model

    model = load_course_model().model
    box = widgets.digit_upload(model)
    upload = box.children[0]
    for index in range(3):
        digit = mnist.x_test[index]
        on_paper = 255 - np.kron(digit, np.ones((3, 3), dtype=np.uint8))
        upload.value = ({"name": f"{index}.png", "type": "image/png", "size": 0, "last_modified": NOW,
                         "content": memoryview(_png_bytes(on_paper))},)
        assert box.error is None
        assert box.figure.probabilities.argmax() == mnist.y_test[index]
    upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "last_modified": NOW,
                     "content": memoryview(b"hello")},)
    assert box.error is not None and "PNG or JPEG" in box.error
