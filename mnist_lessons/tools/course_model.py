"""Build the course model that ships with the package, and its record.

    python -m mnist_lessons.tools.course_model        # about 4 minutes on a 2-core AMX CPU

trains the article's network with :data:`mnist_lessons.model.COURSE_DEFAULTS` on the full MNIST
(always the full settings, whatever ``MNIST_LESSONS_PROFILE`` says): 55,000 training images, the
validation accuracy on the other 5,000 after each epoch, for the fixed ten epochs (nothing is
picked by an accuracy, least of all the test accuracy, measured once at the end). It writes the weights and the
training history to ``mnist_lessons/course_model.npz`` (float32, compressed losslessly), loads
that file back, measures its test accuracy, and writes ``mnist_lessons/course_model.json``: the
file's SHA-256 and size, the accuracy measured on the file, the settings (including the training
code's hash, which ties the shipped model to the code that made it) and the training time.

Run it again whenever the training code changes: a test fails until the shipped model matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

from ..checkpoints import COURSE_MODEL_FILE, COURSE_MODEL_RECORD, load_trained, run_settings, save_trained
from ..data import load_mnist
from ..evaluate import accuracy_on_test_set
from ..model import COURSE_DEFAULTS, ArticleCNN
from ..train import train


def build_course_model(npz: Path = COURSE_MODEL_FILE, record: Path = COURSE_MODEL_RECORD,
                       verbose: bool = True) -> dict:
    """Train the course model, save it, measure the saved file, and write its record."""
    data = load_mnist()
    model = ArticleCNN(COURSE_DEFAULTS)
    started = time.perf_counter()
    history = train(model, data, COURSE_DEFAULTS, verbose=verbose)
    seconds = time.perf_counter() - started
    run = run_settings(COURSE_DEFAULTS, data=data)
    save_trained(model, history, run, Path(npz), compress=True)
    shipped = load_trained(npz, run)
    accuracy = accuracy_on_test_set(shipped.model, data)
    blob = Path(npz).read_bytes()
    info = {
        "file": Path(npz).name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        "test_accuracy": accuracy,
        "test_accuracy_after_training": history.test_accuracy,
        "validation_accuracy_while_training": [round(a, 4) for _, _, a in history.evaluations],
        "training_seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "settings": run,
        "command": "python -m mnist_lessons.tools.course_model",
    }
    Path(record).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the course model shipped with the package.")
    parser.parse_args(argv)
    info = build_course_model()
    print(f"wrote {info['file']}: {info['bytes'] / 1e6:.1f} MB, test accuracy "
          f"{info['test_accuracy']:.2%} measured on the file, {info['training_seconds']:.0f} s "
          f"of training ({info['settings']['hyperparameters']['precision']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
