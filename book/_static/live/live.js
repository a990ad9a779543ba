/*
 * Inside the network, live: the course network running in the reader's browser.
 *
 * Why plain JavaScript and not TensorFlow.js or ONNX Runtime Web. The network is six
 * operations (convolution, ReLU, max-pooling, a dense layer, softmax, and the reshapes between
 * them), and the book already writes each of them out in NumPy (mnist_lessons/numpy_ops.py:
 * conv2d_numpy, relu_numpy, pool2d_numpy, dense_numpy, softmax_stable). This file is the same
 * six functions, loop for loop, so a reader who opens it finds the chapter's code in another
 * language, not a framework call; and the page loads no framework (TensorFlow.js alone is
 * about 1 MB of script, a quarter of the page's 4 MB budget). It is fast enough: one forward
 * pass is about 14 million multiply-adds, a few tens of milliseconds in a plain loop (the tests
 * measure it). Sums run in JavaScript numbers (float64), as the NumPy references do.
 *
 * The weights come from `python -m mnist_lessons.tools.web_model` (run by the book build,
 * book/_ext/live_panel.py): model.json says where each tensor lies in model.bin. The FC layer
 * is quantised to 4 bits (int4, two weights a byte) with one float32 scale per output unit, to
 * keep the page under 4 MB (model.json records the test accuracy this costs: for the course
 * model of 2026-11-27, 99.49% against 99.50% in float32, one prediction of 10,000 changed);
 * the other layers are float32.
 *
 * The preprocessing (preprocess below) follows, step for step, the specification of the Python
 * function mnist_lessons.preprocess.preprocess_digit, and the tests check that both give the
 * same pixels for the same drawing.
 *
 * Entry points for the tests and for curious readers (browser console):
 *   window.mnistLive.ready                 a Promise, resolved once the weights are loaded
 *   window.mnistLive.forward(x784)         -> {conv1, pool1, conv2, pool2, fc, logits, probabilities}
 *   window.mnistLive.preprocess(pixels, height, width) -> Float32Array(784), or null if no ink
 *   window.mnistLive.canvasPixels()        -> {pixels: Float64Array, height, width} of the drawing
 */
(function () {
  "use strict";

  var SCRIPT = document.currentScript;
  var BASE = new URL(".", SCRIPT ? SCRIPT.src : window.location.href);

  // ---------------------------------------------------------------- preprocessing (MNIST-like)
  var FRAME = 28, BOX = 20, MNIST_CENTRE_OF_MASS = 14;  // as mnist_lessons.preprocess

  function roundHalfUp(x) { return Math.floor(x + 0.5); }

  // Overlap matrix (nOut x nIn): output pixel i covers the input interval
  // [i * nIn / nOut, (i + 1) * nIn / nOut); each entry is the overlap with input pixel
  // [k, k + 1) divided by the interval's length, so each row sums to 1.
  function areaWeights(nIn, nOut) {
    var scale = nIn / nOut, w = new Float64Array(nOut * nIn);
    for (var i = 0; i < nOut; i++) {
      var lo = i * scale, hi = (i + 1) * scale;
      for (var k = Math.floor(lo); k < Math.min(nIn, Math.ceil(hi)); k++) {
        var overlap = Math.min(hi, k + 1) - Math.max(lo, k);
        if (overlap > 0) w[i * nIn + k] = overlap / scale;
      }
    }
    return w;
  }

  /**
   * One drawn digit as MNIST would have it: Float32Array(784), 28 x 28 row by row, in [0, 1].
   * pixels: grey levels (ink high), height * width values row by row, 0-1 or 0-255.
   * Returns null when there is no ink.
   */
  function preprocess(pixels, height, width) {
    var n = height * width, top = 0, i, j, k;
    if (!(height >= 1 && width >= 1) || pixels.length !== n) {
      throw new Error("preprocess(pixels, height, width): expected height * width = " + n +
                      " grey levels, got " + pixels.length);
    }
    // 1. scale to [0, 1] when given 0-255
    for (i = 0; i < n; i++) if (pixels[i] > top) top = pixels[i];
    if (top === 0) return null;
    var a = new Float64Array(n);
    for (i = 0; i < n; i++) a[i] = top > 1 ? pixels[i] / 255 : pixels[i];
    // 2. bounding box of the pixels > 0 (bottom and right exclusive)
    var r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (i = 0; i < height; i++) {
      for (j = 0; j < width; j++) {
        if (a[i * width + j] > 0) {
          if (i < r0) r0 = i;
          if (i > r1) r1 = i;
          if (j < c0) c0 = j;
          if (j > c1) c1 = j;
        }
      }
    }
    var h = r1 + 1 - r0, w = c1 + 1 - c0;
    // 3. new size: the longer side becomes 20 pixels
    var s = BOX / Math.max(h, w);
    var h2 = Math.max(1, roundHalfUp(h * s)), w2 = Math.max(1, roundHalfUp(w * s));
    // 4. exact area averaging, rows then columns: R @ crop @ C^T
    var R = areaWeights(h, h2), C = areaWeights(w, w2);
    var tmp = new Float64Array(h2 * w);          // R @ crop
    for (i = 0; i < h2; i++) {
      for (k = 0; k < h; k++) {
        var rk = R[i * h + k];
        if (rk === 0) continue;
        var row = (r0 + k) * width + c0;
        for (j = 0; j < w; j++) tmp[i * w + j] += rk * a[row + j];
      }
    }
    var small = new Float64Array(h2 * w2);       // (R @ crop) @ C^T
    for (i = 0; i < h2; i++) {
      for (j = 0; j < w2; j++) {
        var acc = 0;
        for (k = 0; k < w; k++) acc += tmp[i * w + k] * C[j * w + k];
        small[i * w2 + j] = acc;
      }
    }
    // 5. paste at the centre of a 28 x 28 frame
    var y0 = Math.floor((FRAME - h2) / 2), x0 = Math.floor((FRAME - w2) / 2);
    // 6. centre of mass, in frame indices; shift so it lands on (14, 14), where MNIST's digits
    //    have theirs (preprocess.MNIST_CENTRE_OF_MASS), box kept inside
    var total = 0, sy = 0, sx = 0;
    for (i = 0; i < h2; i++) {
      for (j = 0; j < w2; j++) {
        var v = small[i * w2 + j];
        total += v; sy += v * (y0 + i); sx += v * (x0 + j);
      }
    }
    var cy = sy / total, cx = sx / total, centre = MNIST_CENTRE_OF_MASS;
    var dy = Math.min(Math.max(roundHalfUp(centre - cy), -y0), FRAME - h2 - y0);
    var dx = Math.min(Math.max(roundHalfUp(centre - cx), -x0), FRAME - w2 - x0);
    // 7. float32 out
    var out = new Float32Array(FRAME * FRAME);
    for (i = 0; i < h2; i++) {
      for (j = 0; j < w2; j++) out[(y0 + dy + i) * FRAME + x0 + dx + j] = small[i * w2 + j];
    }
    return out;
  }

  // ---------------------------------------------------------------- the six operations
  // Activations are HWC arrays (NHWC without the batch axis), kernels HWIO, as in numpy_ops.

  // conv2d_numpy with stride 1 and SAME padding, + bias, then relu_numpy:
  //   out[i, j, o] = relu(b[o] + sum_{a, b, c} x[i + a - 2, j + b - 2, c] * kernel[a, b, c, o])
  // (x zero outside the image). The same sum, organised input first: each input value adds
  // x * kernel[a, b, c, :] to every output whose 5 x 5 window covers it. Zeros add nothing and
  // are skipped: after ReLU and pooling about two thirds of pool1 is zero, which makes conv2
  // (10 of the network's 14 million multiply-adds) about three times faster.
  function conv2dSameRelu(x, H, W, Cin, kernel, KH, KW, Cout, bias) {
    var top = Math.floor((KH - 1) / 2), left = Math.floor((KW - 1) / 2);  // same_padding(size, k, 1)
    var acc = new Float64Array(H * W * Cout);
    for (var ii = 0; ii < H; ii++) {
      for (var jj = 0; jj < W; jj++) {
        var xBase = (ii * W + jj) * Cin;
        for (var c = 0; c < Cin; c++) {
          var xv = x[xBase + c];
          if (xv === 0) continue;
          for (var a = 0; a < KH; a++) {
            var i = ii - a + top;                 // the output row whose window row a is ii
            if (i < 0 || i >= H) continue;
            for (var b = 0; b < KW; b++) {
              var j = jj - b + left;
              if (j < 0 || j >= W) continue;
              var oBase = (i * W + j) * Cout, kRow = ((a * KW + b) * Cin + c) * Cout;
              for (var o = 0; o < Cout; o++) acc[oBase + o] += xv * kernel[kRow + o];
            }
          }
        }
      }
    }
    var out = new Float32Array(H * W * Cout);
    for (var p = 0; p < H * W; p++) {
      for (var o2 = 0; o2 < Cout; o2++) {
        var v = acc[p * Cout + o2] + bias[o2];
        out[p * Cout + o2] = v > 0 ? v : 0;       // ReLU
      }
    }
    return out;
  }

  // pool2d_numpy(mode="max", window 2, stride 2, SAME): padded positions are ignored.
  function maxPool2x2(x, H, W, C) {
    var Ho = Math.ceil(H / 2), Wo = Math.ceil(W / 2), out = new Float32Array(Ho * Wo * C);
    for (var i = 0; i < Ho; i++) {
      for (var j = 0; j < Wo; j++) {
        for (var c = 0; c < C; c++) {
          var m = -Infinity;
          for (var a = 0; a < 2; a++) {
            for (var b = 0; b < 2; b++) {
              var ii = 2 * i + a, jj = 2 * j + b;
              if (ii < H && jj < W) m = Math.max(m, x[(ii * W + jj) * C + c]);
            }
          }
          out[(i * Wo + j) * C + c] = m;
        }
      }
    }
    return out;
  }

  // dense_numpy for the quantised FC layer, then ReLU:
  //   fc[u] = relu(scale[u] * sum_i x[i] * q[i, u] + b[u])
  // q is the integer weights, input by input (unpackInt4), so zeros of x (about 70% of pool2)
  // are skipped, as in the convolutions.
  function denseQuantRelu(x, q, scale, bias) {
    var nOut = bias.length, acc = new Float64Array(nOut), out = new Float32Array(nOut);
    for (var i = 0; i < x.length; i++) {
      var xv = x[i];
      if (xv === 0) continue;
      var row = i * nOut;
      for (var u = 0; u < nOut; u++) acc[u] += xv * q[row + u];
    }
    for (var u2 = 0; u2 < nOut; u2++) {
      var v = acc[u2] * scale[u2] + bias[u2];
      out[u2] = v > 0 ? v : 0;
    }
    return out;
  }

  // The file's FC weights -> Int8Array (inputs, outputs) of the integer levels q. In the file
  // each output unit has one row; with 4 bits, byte k of a row holds input 2k in its low half
  // and input 2k + 1 in its high half, each stored as q + 8.
  function unpackFc(packed, bits, nIn, nOut) {
    var q = new Int8Array(nIn * nOut), u, i;
    for (u = 0; u < nOut; u++) {
      if (bits === 4) {
        var base = u * (nIn >> 1);
        for (i = 0; i < nIn; i += 2) {
          var byte = packed[base + (i >> 1)];
          q[i * nOut + u] = (byte & 15) - 8;
          q[(i + 1) * nOut + u] = (byte >> 4) - 8;
        }
      } else {
        for (i = 0; i < nIn; i++) q[i * nOut + u] = packed[u * nIn + i];
      }
    }
    return q;
  }

  // dense_numpy: x @ W + b, W (inputs, outputs).
  function dense(x, W, bias) {
    var nOut = bias.length, out = new Float64Array(nOut);
    for (var o = 0; o < nOut; o++) out[o] = bias[o];
    for (var i = 0; i < x.length; i++) {
      var xv = x[i];
      if (xv === 0) continue;
      for (var o2 = 0; o2 < nOut; o2++) out[o2] += xv * W[i * nOut + o2];
    }
    return out;
  }

  // softmax_stable: subtract the maximum first.
  function softmax(z) {
    var m = -Infinity, i, sum = 0, p = new Float64Array(z.length);
    for (i = 0; i < z.length; i++) m = Math.max(m, z[i]);
    for (i = 0; i < z.length; i++) { p[i] = Math.exp(z[i] - m); sum += p[i]; }
    for (i = 0; i < z.length; i++) p[i] /= sum;
    return p;
  }

  var model = null;  // the tensors, by name, once loaded

  /** The network on one image: x is 784 values in [0, 1], row by row (a (28, 28, 1) input). */
  function forward(x) {
    if (!model) throw new Error("mnistLive.forward: the weights are not loaded yet (await mnistLive.ready)");
    if (!x || x.length !== 784) throw new Error("mnistLive.forward: expected 784 values (28 x 28), got " + (x && x.length));
    var t = model.tensors;
    var input = Float32Array.from(x);
    var conv1 = conv2dSameRelu(input, 28, 28, 1, t["conv1/kernel"], 5, 5, 32, t["conv1/bias"]);
    var pool1 = maxPool2x2(conv1, 28, 28, 32);
    var conv2 = conv2dSameRelu(pool1, 14, 14, 32, t["conv2/kernel"], 5, 5, 64, t["conv2/bias"]);
    var pool2 = maxPool2x2(conv2, 14, 14, 64);
    // pool2 is already (7, 7, 64) row by row, channel last: the flat (3136,) vector of the reshape
    var fc = denseQuantRelu(pool2, model.fcQ, t["fc/scale"], t["fc/bias"]);
    var logits = dense(fc, t["out/kernel"], t["out/bias"]);
    return {input: input, conv1: conv1, pool1: pool1, conv2: conv2, pool2: pool2, fc: fc,
            logits: Array.from(logits), probabilities: Array.from(softmax(logits))};
  }

  var DTYPES = {float32: Float32Array, int8: Int8Array, uint8: Uint8Array};

  function loadModel() {
    return fetch(new URL("model.json", BASE)).then(function (r) {
      if (!r.ok) throw new Error("model.json: HTTP " + r.status);
      return r.json();
    }).then(function (manifest) {
      if (manifest.format !== 1) throw new Error("model.json has format " + manifest.format + ", this page reads 1");
      return fetch(new URL(manifest.binary, BASE)).then(function (r) {
        if (!r.ok) throw new Error(manifest.binary + ": HTTP " + r.status);
        return r.arrayBuffer();
      }).then(function (buffer) {
        var tensors = {};
        manifest.tensors.forEach(function (d) {
          var Type = DTYPES[d.dtype];
          tensors[d.name] = new Type(buffer, d.offset, d.bytes / Type.BYTES_PER_ELEMENT);
        });
        var bits = manifest.fc_bits;
        model = {manifest: manifest, tensors: tensors,
                 fcQ: unpackFc(tensors["fc/kernel_int" + bits], bits, 3136, 1024)};
        return model;
      });
    });
  }

  // ---------------------------------------------------------------- the panel
  var LAYERS = [
    {key: "conv1", title: "conv1: 32 maps, 28 x 28 (after ReLU)", side: 28, n: 32, filter: "conv1"},
    {key: "pool1", title: "pool1: 32 maps, 14 x 14", side: 14, n: 32, filter: "conv1"},
    {key: "conv2", title: "conv2: 64 maps, 14 x 14 (after ReLU)", side: 14, n: 64, filter: "conv2"},
    {key: "pool2", title: "pool2: 64 maps, 7 x 7", side: 7, n: 64, filter: "conv2"}
  ];
  var STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];  // magma-like

  function colour(v, out, at) {       // v in [0, 1] -> RGB into out[at..at+2]
    v = Math.max(0, Math.min(1, v)) * (STOPS.length - 1);
    var k = Math.min(STOPS.length - 2, Math.floor(v)), f = v - k, p = STOPS[k], q = STOPS[k + 1];
    out[at] = p[0] + f * (q[0] - p[0]); out[at + 1] = p[1] + f * (q[1] - p[1]); out[at + 2] = p[2] + f * (q[2] - p[2]);
    out[at + 3] = 255;
  }

  function el(tag, attrs, parent) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    if (parent) parent.appendChild(e);
    return e;
  }

  function paintMap(canvas, values, side, channels, c, top) {
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(side, side);
    for (var p = 0; p < side * side; p++) colour(top > 0 ? values[p * channels + c] / top : 0, img.data, 4 * p);
    ctx.putImageData(img, 0, 0);
  }

  function paintGrey(canvas, values, side) {          // the input: ink white on black, as MNIST
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(side, side);
    for (var p = 0; p < side * side; p++) {
      var g = Math.round(255 * values[p]);
      img.data[4 * p] = img.data[4 * p + 1] = img.data[4 * p + 2] = g; img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function paintKernel(canvas, kernel, Cin, Cout, c, o) {   // diverging: blue < 0 < red
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(5, 5), top = 0, p;
    for (p = 0; p < 25; p++) top = Math.max(top, Math.abs(kernel[(p * Cin + c) * Cout + o]));
    for (p = 0; p < 25; p++) {
      var v = top > 0 ? kernel[(p * Cin + c) * Cout + o] / top : 0;
      img.data[4 * p] = v > 0 ? 255 : Math.round(255 * (1 + v));
      img.data[4 * p + 1] = Math.round(255 * (1 - Math.abs(v)));
      img.data[4 * p + 2] = v < 0 ? 255 : Math.round(255 * (1 - v));
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function fmt(v) { return (Math.round(v * 10000) / 10000).toFixed(4); }

  function buildPanel(root) {
    var m = model.manifest, t = model.tensors;
    root.textContent = "";
    var state = {strokes: [], result: null, source: "empty"};

    // -- left: drawing, controls, samples, input
    var drawBox = el("section", {"class": "ml-draw", "aria-label": "Draw a digit"}, root);
    el("h3", {text: "1. Draw a digit"}, drawBox);
    var canvas = el("canvas", {width: 280, height: 280, "class": "ml-canvas", id: "ml-canvas",
                               "aria-label": "Drawing area: draw one digit with a mouse, a pen or a finger"}, drawBox);
    var ctx = canvas.getContext("2d", {willReadFrequently: true});   // read back on every stroke
    var controls = el("div", {"class": "ml-controls"}, drawBox);
    var undo = el("button", {type: "button", id: "ml-undo", text: "Undo stroke"}, controls);
    var clear = el("button", {type: "button", id: "ml-clear", text: "Clear"}, controls);
    el("p", {"class": "ml-hint", text: "Or pick a real test digit:"}, drawBox);
    var samples = el("div", {"class": "ml-samples", role: "group", "aria-label": "Real MNIST test digits"}, drawBox);
    var images = t["samples/images"];
    m.samples.labels.forEach(function (label, s) {
      var b = el("button", {type: "button", "class": "ml-sample", "data-index": s,
                            "aria-label": "Test image " + m.samples.test_indices[s] + ", a " + label}, samples);
      var c = el("canvas", {width: 28, height: 28, "aria-hidden": "true"}, b);
      var px = new Float32Array(784);
      for (var p = 0; p < 784; p++) px[p] = images[s * 784 + p] / 255;
      paintGrey(c, px, 28);
      b.addEventListener("click", function () {
        state.strokes = []; redraw();
        show(px, "test image " + m.samples.test_indices[s] + " (label " + label + ")");
      });
    });

    // -- right: what the network sees and computes
    var view = el("section", {"class": "ml-view", "aria-label": "Inside the network"}, root);
    var head = el("div", {"class": "ml-head"}, view);
    var inBox = el("figure", {"class": "ml-input"}, head);
    var inCanvas = el("canvas", {width: 28, height: 28, "class": "ml-map ml-big", tabindex: "0",
                                 "aria-label": "The 28 x 28 input after preprocessing"}, inBox);
    el("figcaption", {text: "2. Input, 28 x 28 (preprocessed like MNIST)"}, inBox);
    var probBox = el("figure", {"class": "ml-probs"}, head);
    var prediction = el("p", {"class": "ml-prediction", id: "ml-prediction", "aria-live": "polite",
                              "data-digit": "", text: "Draw a digit."}, probBox);
    var bars = [];
    for (var d = 0; d < 10; d++) {
      var rowEl = el("div", {"class": "ml-bar-row"}, probBox);
      el("span", {"class": "ml-bar-label", text: String(d)}, rowEl);
      var track = el("span", {"class": "ml-bar-track"}, rowEl);
      var bar = el("span", {"class": "ml-bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "1",
                            "aria-valuenow": "0", "aria-label": "probability of " + d}, track);
      var val = el("span", {"class": "ml-bar-value", text: ""}, rowEl);
      bars.push({bar: bar, val: val, row: rowEl});
    }
    el("figcaption", {text: "8. Probabilities (softmax of the ten logits)"}, probBox);
    var readout = el("p", {"class": "ml-readout", id: "ml-readout", "aria-live": "polite",
                           text: "Hover over (or focus) a map or a pixel to read its value and see its filter."}, view);
    var filterBox = el("div", {"class": "ml-filter", id: "ml-filter"}, view);

    var grids = {};
    LAYERS.forEach(function (layer, li) {
      var fig = el("figure", {"class": "ml-layer ml-" + layer.key}, view);
      el("figcaption", {text: (li + 3) + ". " + layer.title}, fig);
      var grid = el("div", {"class": "ml-grid", tabindex: "0", role: "group",
                            "aria-label": layer.title + ": use the arrow keys to choose a map"}, fig);
      var maps = [];
      for (var k = 0; k < layer.n; k++) {
        maps.push(el("canvas", {width: layer.side, height: layer.side, "class": "ml-map", "data-map": k}, grid));
      }
      grids[layer.key] = {grid: grid, maps: maps, layer: layer, selected: 0};
      grid.addEventListener("mousemove", function (ev) {
        var target = ev.target;
        if (!target.dataset || target.dataset.map === undefined) return;
        var k = +target.dataset.map, r = target.getBoundingClientRect();
        var row = Math.floor((ev.clientY - r.top) / r.height * layer.side);
        var col = Math.floor((ev.clientX - r.left) / r.width * layer.side);
        inspect(layer, k, Math.max(0, Math.min(layer.side - 1, row)), Math.max(0, Math.min(layer.side - 1, col)));
      });
      grid.addEventListener("keydown", function (ev) {
        var cols = window.getComputedStyle(grid).gridTemplateColumns.split(" ").length;
        var g = grids[layer.key], step = {ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols}[ev.key];
        if (step === undefined) return;
        ev.preventDefault();
        g.selected = (g.selected + step + layer.n) % layer.n;
        inspect(layer, g.selected, null, null);
      });
      grid.addEventListener("focus", function () { inspect(layer, grids[layer.key].selected, null, null); });
    });
    var fcFig = el("figure", {"class": "ml-layer ml-fc"}, view);
    el("figcaption", {text: "7. FC: 1,024 activations (after ReLU), shown as 32 x 32"}, fcFig);
    var fcCanvas = el("canvas", {width: 32, height: 32, "class": "ml-map ml-fc-map", tabindex: "0",
                                 "aria-label": "The 1,024 FC activations"}, fcFig);

    function inspect(layer, k, row, col) {
      var g = grids[layer.key];
      g.maps.forEach(function (c, i) { c.classList.toggle("ml-selected", i === k); });
      g.selected = k;
      var text = layer.key + " map " + k;
      if (state.result && row !== null) {
        var v = state.result[layer.key][(row * layer.side + col) * layer.n + k];
        text += ", row " + row + ", column " + col + ": " + fmt(v);
      } else if (state.result) {
        var a = state.result[layer.key], top = 0;
        for (var p = 0; p < layer.side * layer.side; p++) top = Math.max(top, a[p * layer.n + k]);
        text += ": largest value " + fmt(top);
      }
      readout.textContent = text;
      showFilter(layer.filter, k);
    }

    function showFilter(which, k) {
      filterBox.textContent = "";
      var kernel = t[which + "/kernel"], Cin = which === "conv1" ? 1 : 32, Cout = which === "conv1" ? 32 : 64;
      el("p", {text: which === "conv1"
        ? "Filter of conv1 map " + k + ": its learned 5 x 5 kernel (red > 0, blue < 0), bias " + fmt(t["conv1/bias"][k])
        : "Filter of conv2 map " + k + ": 32 learned 5 x 5 kernels, one per pool1 map it reads (red > 0, blue < 0), bias " + fmt(t["conv2/bias"][k])}, filterBox);
      var row = el("div", {"class": "ml-kernels"}, filterBox);
      for (var c = 0; c < Cin; c++) {
        var kc = el("canvas", {width: 5, height: 5, "class": Cin === 1 ? "ml-kernel ml-big" : "ml-kernel",
                               title: which + " kernel, input channel " + c}, row);
        paintKernel(kc, kernel, Cin, Cout, c, k);
      }
    }

    function pixelReadout(target, side, values, label, ev) {
      var r = target.getBoundingClientRect();
      var row = Math.max(0, Math.min(side - 1, Math.floor((ev.clientY - r.top) / r.height * side)));
      var col = Math.max(0, Math.min(side - 1, Math.floor((ev.clientX - r.left) / r.width * side)));
      if (!values) return;
      readout.textContent = label(row * side + col, row, col) + ": " + fmt(values[row * side + col]);
    }
    inCanvas.addEventListener("mousemove", function (ev) {
      pixelReadout(inCanvas, 28, state.result && state.result.input, function (p, r, c) { return "input pixel row " + r + ", column " + c; }, ev);
    });
    fcCanvas.addEventListener("mousemove", function (ev) {
      pixelReadout(fcCanvas, 32, state.result && state.result.fc, function (p) { return "FC unit " + p; }, ev);
    });

    function render(res) {
      paintGrey(inCanvas, res.input, 28);
      LAYERS.forEach(function (layer) {
        var a = res[layer.key], top = 0;
        for (var p = 0; p < a.length; p++) if (a[p] > top) top = a[p];
        grids[layer.key].maps.forEach(function (c, k) { paintMap(c, a, layer.side, layer.n, k, top); });
      });
      var fcTop = 0;
      for (var u = 0; u < 1024; u++) fcTop = Math.max(fcTop, res.fc[u]);
      paintMap(fcCanvas, res.fc, 32, 1, 0, fcTop);
      var best = 0;
      res.probabilities.forEach(function (p, d) {
        if (p > res.probabilities[best]) best = d;
        bars[d].bar.style.width = (100 * p).toFixed(1) + "%";
        bars[d].bar.setAttribute("aria-valuenow", p.toFixed(4));
        bars[d].val.textContent = (100 * p).toFixed(1) + "%";
      });
      bars.forEach(function (b, d) { b.row.classList.toggle("ml-best", d === best); });
      prediction.textContent = "The network reads a " + best + " (" + (100 * res.probabilities[best]).toFixed(1) + "%)";
      prediction.dataset.digit = String(best);
    }

    function blank() {
      var all = [inCanvas, fcCanvas];
      Object.keys(grids).forEach(function (k) { all = all.concat(grids[k].maps); });
      all.forEach(function (c) { var x = c.getContext("2d"); x.fillStyle = "#000"; x.fillRect(0, 0, c.width, c.height); });
      bars.forEach(function (b) { b.bar.style.width = "0"; b.val.textContent = ""; b.row.classList.remove("ml-best"); });
      prediction.textContent = "Draw a digit.";
      prediction.dataset.digit = "";
      state.result = null;
    }

    function show(x, source) {
      state.result = forward(x);
      state.source = source;
      render(state.result);
    }

    // -- drawing with pointer events (mouse, pen, touch alike)
    function redraw() {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff";
      ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
      state.strokes.forEach(function (s) {
        ctx.beginPath();
        ctx.moveTo(s[0][0], s[0][1]);
        if (s.length === 1) ctx.lineTo(s[0][0] + 0.01, s[0][1]);
        for (var i = 1; i < s.length; i++) ctx.lineTo(s[i][0], s[i][1]);
        ctx.stroke();
      });
    }
    var pending = false;
    function update() {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(function () {
        pending = false;
        var d = canvasPixels(), x = preprocess(d.pixels, d.height, d.width);
        if (x) show(x, "drawing"); else blank();
      });
    }
    function point(ev) {
      var r = canvas.getBoundingClientRect();
      return [(ev.clientX - r.left) / r.width * canvas.width, (ev.clientY - r.top) / r.height * canvas.height];
    }
    var drawing = null;
    canvas.addEventListener("pointerdown", function (ev) {
      ev.preventDefault();
      canvas.setPointerCapture(ev.pointerId);
      drawing = [point(ev)];
      state.strokes.push(drawing);
      redraw(); update();
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (!drawing) return;
      drawing.push(point(ev));
      redraw(); update();
    });
    function end() { drawing = null; }
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    undo.addEventListener("click", function () { state.strokes.pop(); redraw(); update(); });
    clear.addEventListener("click", function () { state.strokes = []; redraw(); update(); });

    function canvasPixels() {
      var data = ctx.getImageData(0, 0, canvas.width, canvas.height).data, n = canvas.width * canvas.height;
      var pixels = new Float64Array(n);
      for (var p = 0; p < n; p++) pixels[p] = data[4 * p];   // red channel: ink white (255) on black (0)
      return {pixels: pixels, height: canvas.height, width: canvas.width};
    }
    api.canvasPixels = canvasPixels;
    api.setStrokes = function (strokes) { state.strokes = strokes.map(function (s) { return s.slice(); }); redraw(); update(); };

    redraw();
    blank();
    showFilter("conv1", 0);
    root.classList.add("ml-ready");
  }

  var api = {forward: forward, preprocess: preprocess, roundHalfUp: roundHalfUp};
  api.ready = loadModel().then(function (m) {
    api.manifest = m.manifest;
    var root = document.getElementById("mnist-live");
    if (root) buildPanel(root);
    return m.manifest;
  }).catch(function (err) {
    var root = document.getElementById("mnist-live");
    if (root) root.textContent = "The live panel could not load the network's weights (" + err.message + ").";
    throw err;
  });
  window.mnistLive = api;
})();
