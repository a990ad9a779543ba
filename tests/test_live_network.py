"""The live page ("Inside the network, live"), checked in headless Chromium the way a reader uses it.

The page comes from the built book (`built_book` in conftest.py: `_build/html`, or
`MNIST_LESSONS_BUILD=<folder>/_build` for a build made elsewhere), served over a local HTTP
server. Oracles, independent of the page's JavaScript:

- the course network in TensorFlow (`ArticleCNN`), given the very weights the page downloads
  (read here from the built `model.bin` with NumPy), on 200 real MNIST test images;
- the Python twin of the page's preprocessing, `mnist_lessons.preprocess.preprocess_digit`,
  on the pixels of 20 drawings made on the page's canvas;
- the real test digits' labels, for strokes drawn with the mouse and digits picked with the
  keyboard, and the course model's own record (`course_model.json`) for the accuracy the page
  states.
"""

from __future__ import annotations

import base64
import functools
import gzip
import http.server
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PAGE = "book/live_network.html"
BUDGET_BYTES = 4_000_000


#: What GitHub Pages sends compressed (gzip) when the browser accepts it: text, not images or
#: binary files such as the weights.
COMPRESSED = {".html", ".css", ".js", ".json", ".svg", ".txt", ".xml"}


@pytest.fixture(scope="module")
def live_server(built_book):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        """Serves the build like GitHub Pages: text gzip-compressed for browsers that accept it."""

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = Path(self.translate_path(self.path))
            if (path.suffix in COMPRESSED and path.is_file()
                    and "gzip" in self.headers.get("Accept-Encoding", "")):
                body = gzip.compress(path.read_bytes())
                self.send_response(200)
                self.send_header("Content-Type", self.guess_type(str(path)))
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

    handler = functools.partial(Quiet, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class Visit:
    """One visit of the page: its errors, its transferred bytes, and the requests blocked."""

    def __init__(self, browser, url: str, width: int = 1280, height: int = 900,
                 javascript: bool = True) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height},
                                           java_script_enabled=javascript)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.bytes: dict[str, int] = {}
        self.blocked: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}")
                     if msg.type == "error" else None)
        self.page.on("requestfinished", self._count)

        def block(route):
            self.blocked.append(route.request.url)
            route.abort()

        # this machine reaches no CDN; the book's pages must not need one
        self.page.route(re.compile(r"^(?!http://127\.0\.0\.1).*"), block)
        self.page.goto(url, wait_until="load")
        if javascript:
            self.manifest = self.page.evaluate("window.mnistLive.ready")

    def _count(self, request) -> None:
        sizes = request.sizes()
        self.bytes[request.url] = sizes["responseBodySize"] + sizes["responseHeadersSize"]

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def visit(browser, live_server):
    v = Visit(browser, f"{live_server}/{PAGE}")
    yield v
    v.close()


@pytest.fixture(scope="module")
def shipped_web_weights(built_book) -> dict[str, np.ndarray]:
    """The tensors the page downloads, read from the built model.bin with NumPy."""
    folder = built_book / "_static" / "live"
    manifest = json.loads((folder / "model.json").read_text())
    blob = (folder / manifest["binary"]).read_bytes()
    return {t["name"]: np.frombuffer(blob, dtype=t["dtype"], count=int(np.prod(t["shape"])),
                                     offset=t["offset"]).reshape(t["shape"])
            for t in manifest["tensors"]}


def _python_model(tensors: dict[str, np.ndarray]):
    from mnist_lessons.model import ArticleCNN

    model = ArticleCNN()
    packed = tensors["fc/kernel_int4"].astype(np.int16)      # (1024, 1568): two weights a byte
    q = np.empty((packed.shape[0], 2 * packed.shape[1]), np.float32)
    q[:, 0::2], q[:, 1::2] = (packed & 15) - 8, (packed >> 4) - 8
    fc = (q * tensors["fc/scale"][:, None]).T
    model.set_weights({"weights/W_conv1": tensors["conv1/kernel"], "biases/b_conv1": tensors["conv1/bias"],
                       "weights/W_conv2": tensors["conv2/kernel"], "biases/b_conv2": tensors["conv2/bias"],
                       "weights/W_fc": fc, "biases/b_fc": tensors["fc/bias"],
                       "weights/out": tensors["out/kernel"], "biases/out": tensors["out/bias"]})
    return model


def _page_logits(page, images: np.ndarray) -> np.ndarray:
    """The page's forward pass (``window.mnistLive.forward``) on each image, shape (N, 10).

    The images travel as the base64 of their float32 bytes (Playwright sends a list of 156,800
    numbers slowly, a value at a time); the page decodes them into the same float32 values."""
    b64 = base64.b64encode(np.ascontiguousarray(images, dtype="<f4").tobytes()).decode("ascii")
    return np.array(page.evaluate("""b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const all = new Float32Array(bytes.buffer), logits = [];
        for (let i = 0; i < all.length; i += 784) {
            logits.push(Array.from(window.mnistLive.forward(all.slice(i, i + 784)).logits));
        }
        return logits;
    }""", b64))


def _prediction(page) -> str:
    return page.locator("#ml-prediction").get_attribute("data-digit")


def test_page_forward_pass_agrees_with_the_python_model_on_200_test_images(visit, mnist, shipped_web_weights):
    images = mnist.x_test[:200].astype(np.float32) / 255.0
    js = _page_logits(visit.page, images)
    python = _python_model(shipped_web_weights)(images).numpy()
    assert js.shape == (200, 10)
    np.testing.assert_array_equal(js.argmax(1), python.argmax(1))
    assert np.abs(js - python).max() < 1e-3, np.abs(js - python).max()
    assert (js.argmax(1) == mnist.y_test[:200]).mean() >= 0.98
    assert not visit.errors, visit.errors


def test_page_int4_logits_stay_within_the_measured_quantisation_change_of_float32(visit, mnist):
    from mnist_lessons.checkpoints import COURSE_MODEL_FILE
    from mnist_lessons.model import ArticleCNN

    with np.load(COURSE_MODEL_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files if k.startswith(("weights/", "biases/"))}
    model = ArticleCNN()
    model.set_weights(arrays)
    images = mnist.x_test[:200].astype(np.float32) / 255.0
    js = _page_logits(visit.page, images)
    change = np.abs(js - model(images).numpy()).max()
    assert 0 < change <= visit.manifest["max_logit_change"]["int4"] + 1e-3


def _stroke(page, points) -> None:
    box = page.locator("#ml-canvas").bounding_box()
    at = [(box["x"] + x / 280 * box["width"], box["y"] + y / 280 * box["height"]) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for a, b in zip(at, at[1:]):
        page.mouse.move(*b, steps=6)
    page.mouse.up()


def test_mouse_strokes_of_a_1_and_a_7_are_read_as_1_and_7(visit):
    page = visit.page
    page.locator("#ml-clear").click()
    _stroke(page, [(145, 40), (140, 240)])
    page.wait_for_function("document.querySelector('#ml-prediction').dataset.digit !== ''")
    assert _prediction(page) == "1"
    assert "reads a 1" in page.locator("#ml-prediction").inner_text()

    page.locator("#ml-clear").click()
    page.wait_for_function("document.querySelector('#ml-prediction').dataset.digit === ''")
    _stroke(page, [(70, 50), (210, 50)])                      # the bar of the 7
    box = page.locator("#ml-canvas").bounding_box()
    page.mouse.move(box["x"] + 210 / 280 * box["width"], box["y"] + 50 / 280 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 170 / 280 * box["width"], box["y"] + 140 / 280 * box["height"], steps=8)
    page.wait_for_timeout(100)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)            # mid-drawing: the pen still down
    shot = SCREENSHOTS / "live-panel-drawing.png"
    page.locator("#mnist-live").screenshot(path=str(shot))
    page.mouse.move(box["x"] + 130 / 280 * box["width"], box["y"] + 240 / 280 * box["height"], steps=8)
    page.mouse.up()
    page.wait_for_timeout(100)
    assert _prediction(page) == "7"
    assert shot.stat().st_size > 30_000  # the README's picture: `make readme-picture` copies it

    page.locator("#ml-undo").click()                          # undo the diagonal: a bar alone
    page.wait_for_timeout(100)
    assert _prediction(page) != "" and page.locator("#ml-prediction").inner_text().startswith("The network")
    assert not visit.errors, visit.errors


def _drawings() -> list[list[list[list[float]]]]:
    """20 drawings (lists of strokes of (x, y) points on the 280 x 280 canvas): digit-like
    shapes at different sizes and places, a dot, thin and flat lines, and scribbles."""
    rng = np.random.default_rng(13)
    shapes = [
        [[[140, 30], [140, 250]]],                                       # a tall thin 1
        [[[30, 140], [250, 140]]],                                       # a flat bar
        [[[200, 200]]],                                                  # a dot
        [[[10, 10], [40, 15]]],                                          # small, in a corner
        [[[60, 60], [220, 60], [120, 250]]],                             # a 7
        [[[100, 80], [180, 80], [180, 140], [100, 140], [100, 80]], [[180, 140], [180, 250]]],
        [[[0, 0], [279, 279]]],                                          # corner to corner
        [[[270, 30], [275, 260]]],                                       # on the right edge
    ]
    for _ in range(20 - len(shapes)):
        n = int(rng.integers(1, 4))
        centre, size = rng.uniform(60, 220, 2), rng.uniform(20, 200)
        shapes.append([(centre + rng.uniform(-size / 2, size / 2, (int(rng.integers(2, 9)), 2))).round(1).tolist()
                       for _ in range(n)])
    return [[[[float(x), float(y)] for x, y in stroke] for stroke in drawing] for drawing in shapes]


def test_js_and_python_preprocessing_agree_pixel_for_pixel_on_20_drawings(visit):
    from mnist_lessons.preprocess import preprocess_digit

    worst = 0.0
    for drawing in _drawings():
        got = visit.page.evaluate("""strokes => {
            window.mnistLive.setStrokes(strokes);
            const d = window.mnistLive.canvasPixels();
            return {pixels: Array.from(d.pixels).join(","), height: d.height, width: d.width,
                    js: Array.from(window.mnistLive.preprocess(d.pixels, d.height, d.width))};
        }""", drawing)  # the 78,400 pixels as one string: Playwright sends long lists slowly
        pixels = np.array(got["pixels"].split(","), dtype=np.float64).reshape(got["height"], got["width"])
        assert pixels.max() == 255 and 0 < (pixels > 0).mean() < 0.9, "the drawing shows on the canvas"
        python = preprocess_digit(pixels)
        js = np.array(got["js"], dtype=np.float32).reshape(28, 28)
        worst = max(worst, float(np.abs(js - python).max()))
        np.testing.assert_allclose(js, python, atol=1e-6, rtol=0)
    _record({"preprocess_js_vs_python_max_abs_difference": worst})
    assert worst < 1e-6
    assert not visit.errors, visit.errors


def test_one_forward_pass_takes_under_100_ms(visit, mnist):
    median_ms = visit.page.evaluate("""x => {
        const input = new Float32Array(x), times = [];
        for (let i = 0; i < 20; i++) {
            const t0 = performance.now();
            window.mnistLive.forward(input);
            times.push(performance.now() - t0);
        }
        times.sort((a, b) => a - b);
        return (times[9] + times[10]) / 2;
    }""", (mnist.x_test[0].astype(np.float32) / 255).ravel().tolist())
    _record({"forward_pass_median_ms": round(median_ms, 1)})
    assert median_ms < 100, f"median forward pass {median_ms:.1f} ms"


def _record(values: dict) -> None:
    path = SCREENSHOTS / "live-panel-measurements.json"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**known, **values}, indent=1, sort_keys=True) + "\n")


def test_page_downloads_under_4_mb_and_needs_no_other_host(browser, live_server):
    fresh = Visit(browser, f"{live_server}/{PAGE}")
    fresh.page.wait_for_load_state("networkidle")
    entries = fresh.page.evaluate("""() => performance.getEntriesByType('navigation')
        .concat(performance.getEntriesByType('resource'))
        .map(e => [e.name, e.transferSize, e.decodedBodySize])""")
    transferred = sum(t for _, t, _ in entries)
    weights = sum(t for url, t, _ in entries if "/_static/live/model." in url)
    _record({"page_transferred_bytes": transferred,
             "page_uncompressed_bytes": sum(d for _, _, d in entries),
             "weights_transferred_bytes": weights, "requests": len(entries),
             "blocked_other_hosts": fresh.blocked})
    errors = fresh.errors
    fresh.close()
    assert weights > 1_500_000, "the weights were downloaded"
    assert transferred < BUDGET_BYTES, f"{transferred} bytes transferred"
    assert not fresh.blocked, "the page needs no other host"
    assert not errors, errors


def test_keyboard_reaches_every_control_and_picks_a_test_digit(visit, mnist):
    page = visit.page
    page.locator("#ml-undo").focus()
    reached = {"ml-undo"}
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("(() => { const e = document.activeElement;"
                                  " return e.id || e.className; })()"))
    assert {"ml-undo", "ml-clear", "ml-sample", "ml-grid", "ml-map ml-fc-map"} <= reached, reached
    labels = visit.manifest["samples"]["labels"]
    for s, label in enumerate(labels):
        page.locator(f".ml-sample[data-index='{s}']").focus()
        page.keyboard.press("Enter")
        assert _prediction(page) == str(label)
    page.locator(".ml-conv1 .ml-grid").focus()
    page.keyboard.press("ArrowRight")
    assert page.locator("#ml-readout").inner_text().startswith("conv1 map 1")
    assert page.locator("#ml-filter canvas").count() == 1
    page.locator(".ml-conv2 .ml-grid").focus()
    assert page.locator("#ml-filter canvas").count() == 32, "a conv2 filter: 32 kernels of 5 x 5"
    assert not visit.errors, visit.errors


def test_hovering_shows_a_maps_filter_and_a_pixels_value(visit, mnist):
    page = visit.page
    s = visit.manifest["samples"]["labels"].index(7)
    page.locator(f".ml-sample[data-index='{s}']").click()
    image = mnist.x_test[visit.manifest["samples"]["test_indices"][s]].astype(np.float64) / 255
    canvas = page.locator(".ml-input canvas")
    box = canvas.bounding_box()
    row, col = (int(i[0]) for i in np.nonzero((image > 0.1) & (image < 0.9)))  # a grey pixel
    canvas.hover(position={"x": (col + 0.5) * box["width"] / 28, "y": (row + 0.5) * box["height"] / 28})
    text = page.locator("#ml-readout").inner_text()
    assert text == f"input pixel row {row}, column {col}: {image[row, col]:.4f}"
    page.locator(".ml-conv1 canvas[data-map='5']").hover()
    assert page.locator("#ml-readout").inner_text().startswith("conv1 map 5, row")
    assert "Filter of conv1 map 5" in page.locator("#ml-filter").inner_text()
    assert not visit.errors, visit.errors


def test_page_states_the_measured_accuracies(visit):
    record = json.loads((ROOT / "mnist_lessons" / "course_model.json").read_text())
    text = visit.page.locator("article").inner_text()
    assert f"{100 * record['test_accuracy']:.2f}%" in text
    assert f"{100 * visit.manifest['test_accuracy']['int4']:.2f}%" in text
    assert "%%live" not in text


def test_panel_fits_a_phone_screen(browser, live_server):
    phone = Visit(browser, f"{live_server}/{PAGE}", width=375, height=740)
    overflow = phone.page.evaluate("""() => {
        const root = document.getElementById('mnist-live');
        return {panel: root.scrollWidth - root.clientWidth,
                canvas: document.getElementById('ml-canvas').getBoundingClientRect().right,
                width: window.innerWidth};
    }""")
    errors = phone.errors
    phone.close()
    assert overflow["panel"] <= 0 and overflow["canvas"] <= overflow["width"], overflow
    assert not errors, errors


def test_without_javascript_the_page_shows_a_note_and_a_static_figure(browser, live_server):
    plain = Visit(browser, f"{live_server}/{PAGE}", javascript=False)
    note = plain.page.locator(".mnist-live-static")
    visible = note.is_visible() and "needs JavaScript" in note.inner_text()
    loaded = plain.page.eval_on_selector(".mnist-live-static img", "e => e.complete && e.naturalWidth > 0")
    plain.close()
    assert visible and loaded
