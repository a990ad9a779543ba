"""The trained-model cache: train once, then load the saved weights in every later chapter.

:func:`trained_model` returns the article's network trained with the given settings (the
course defaults when none are given). The first call trains it and saves the weights and the
training history to the cache folder; later calls, in any chapter, load that file in a second
instead of training again.

A cached model is never stale. Its file is named after a hash of *everything* that determines
the trained weights (:func:`run_settings`):

- the hyperparameters, normalised (``learning_rate=1`` and ``1.0`` are one setting) and with the
  precision *resolved* (``"auto"`` is stored as the ``"float32"`` or ``"bfloat16"`` it meant on
  this machine);
- the optimizer, the dropout-at-test-time switch and the CI profile's step cap;
- a fingerprint of the data it was trained and evaluated on (SHA-256 of the four arrays), so
  a model trained on a subset is never served for the full set;
- a hash of the code that trains (the modules ``data``, ``model``, ``train`` and ``runtime``,
  comments and docstrings left out), so a change to that code retrains;
- the versions of TensorFlow, Keras and NumPy.

Anything that does not match, a damaged file, or a file of an older format is a cache *miss*:
:func:`trained_model` says why in one line and trains again; nothing has to be deleted by hand.
Files are written atomically (a temporary file renamed when complete).

The course model itself ships with the package (:data:`COURSE_MODEL_FILE`), so the chapters that
study the trained network start in seconds on a fresh machine. :func:`trained_model` with the
course settings loads it when its SHA-256 is the recorded one and it was trained by the current
training code on the same data; its precision and library versions are those of the machine
that trained it, stated in its record, not this one's.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import data as data_module
from . import model as model_module
from . import runtime as runtime_module
from . import train as train_module
from .config import settings
from .data import MNIST, load_mnist
from .model import COURSE_DEFAULTS, ArticleCNN, Hyperparameters
from .runtime import resolve_precision
from .tools.files import save_npz_atomically
from .train import History, train

#: Bumped whenever the file layout changes; older files are then a miss. (3: the history holds
#: validation accuracies during training and the test accuracy measured once.)
CACHE_FORMAT_VERSION = 3

#: The modules whose code decides what training produces (evaluation is not among them: it
#: reads the weights but never changes them).
TRAINING_CODE = (data_module, model_module, train_module, runtime_module)

#: The course model, trained once by ``python -m mnist_lessons.tools.course_model`` and shipped
#: with the package, and its record (SHA-256, size, settings, the accuracy measured on the file).
COURSE_MODEL_FILE = Path(__file__).with_name("course_model.npz")
COURSE_MODEL_RECORD = Path(__file__).with_name("course_model.json")


class ModelCacheError(RuntimeError):
    """A cached model could not be used; the message says what happened and what to do.

    Attributes:
        reason: the short cause (``"damaged file"``, ``"older format 1"``, ``"other settings:
            code"``...), which :func:`trained_model` prints in its one line before retraining.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass
class TrainedModel:
    """A trained network with how it was trained.

    Attributes:
        model: the network, ready to call.
        history: the losses and accuracies measured while training.
        settings: what it was trained with (hyperparameters, optimizer, step cap, ...).
        path: the cache file.
        from_cache: True if it was loaded rather than trained now.
    """

    model: ArticleCNN
    history: History
    settings: dict[str, Any]
    path: Path
    from_cache: bool


#: Node fields that Pythons newer than 3.11 added (3.12: the type parameters of functions and
#: classes, empty in code that has none); left out, so a fingerprint is the same under every
#: supported Python (3.11 to 3.13), and a model shipped or cached under one is found under another.
NEWER_AST_FIELDS = frozenset({"type_params"})


def ast_text(node: Any) -> str:
    """A syntax tree as text: ``ast.dump(node, annotate_fields=False)`` exactly as Python 3.11
    writes it, under any Python from 3.11 on (fields in ``NEWER_AST_FIELDS`` left out).

    ``ast.dump`` itself differs between versions (3.12 writes the new ``type_params`` of every
    function, 3.13 leaves out empty fields), which would give the same code another
    fingerprint under Colab's Python than under the one that trained the shipped model.
    """
    if isinstance(node, ast.AST):
        cls, parts, named = type(node), [], False
        for name in node._fields:
            if name in NEWER_AST_FIELDS:
                continue
            try:
                value = getattr(node, name)
            except AttributeError:
                named = True
                continue
            if value is None and getattr(cls, name, ...) is None:  # an optional field, unset
                named = True
                continue
            text = ast_text(value)
            parts.append(f"{name}={text}" if named else text)
        return f"{cls.__name__}({', '.join(parts)})"
    if isinstance(node, list):
        return f"[{', '.join(ast_text(item) for item in node)}]"
    return repr(node)


def code_fingerprint(source: str) -> str:
    """What a piece of Python code *does*, as text: its syntax tree without docstrings.

    Comments and formatting are not in the tree and docstrings are removed, so editing prose
    keeps the fingerprint, while any change to the code, however small, changes it. The text is
    the same under every supported Python (:func:`ast_text`).
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast_text(tree)


@functools.lru_cache(maxsize=None)
def training_code_hash(modules: tuple = TRAINING_CODE) -> str:
    """SHA-256 (16 hex digits) of the :func:`code_fingerprint` of each module that trains.

    Computed once per process, from the modules as first read: the code that runs, even if a
    file is edited later while a notebook's kernel still runs the old one.
    """
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.__name__.encode() + b"\0")
        digest.update(code_fingerprint(inspect.getsource(module)).encode() + b"\0")
    return digest.hexdigest()[:16]


_FINGERPRINTS: dict[int, tuple[MNIST, str]] = {}


def data_fingerprint(data: MNIST) -> str:
    """SHA-256 (16 hex digits) of the four arrays of ``data``: shapes, dtypes and every byte.

    Two datasets share a fingerprint only if they hold the same images and labels, so a model
    trained on a subset is never taken for one trained on the full set. Computed once per
    dataset object (about 0.1 s for the full MNIST).
    """
    if not isinstance(data, MNIST):
        raise TypeError(f"data must be MNIST from load_mnist(), got {type(data).__name__}")
    known = _FINGERPRINTS.get(id(data))
    if known is not None and known[0] is data:
        return known[1]
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        array = np.ascontiguousarray(getattr(data, name))
        digest.update(f"{name}{array.shape}{array.dtype.str}".encode())
        digest.update(memoryview(array).cast("B"))
    fingerprint = digest.hexdigest()[:16]
    _FINGERPRINTS[id(data)] = (data, fingerprint)
    return fingerprint


def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute the training: TensorFlow, Keras, NumPy."""
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def run_settings(hp: Hyperparameters, optimizer: str = "adam",
                 dropout_at_inference: bool = False, max_steps: int | None = None,
                 data: MNIST | None = None, track_training: bool = False,
                 eval_every: int | None = None) -> dict[str, Any]:
    """Everything that determines a trained model, as one JSON-able dictionary: the cache key.

    Args:
        hp: the hyperparameters; ``precision`` is stored resolved (``"auto"`` becomes what it
            means on this machine).
        optimizer, dropout_at_inference, max_steps, track_training, eval_every: as for
            :func:`trained_model`.
        data: the data it trains on; ``None`` stands for :func:`load_mnist`'s MNIST.
    """
    if not isinstance(hp, Hyperparameters):
        raise TypeError(f"hp must be a Hyperparameters, got {type(hp).__name__}")
    if max_steps is not None:
        max_steps = int(max_steps)
    run = {"format": CACHE_FORMAT_VERSION,
           "hyperparameters": hp.replace(precision=resolve_precision(hp.precision)).to_dict(),
           "optimizer": optimizer, "dropout_at_inference": bool(dropout_at_inference),
           "max_steps": max_steps, "track_training": bool(track_training),
           "data": data_fingerprint(data if data is not None else load_mnist()),
           "code": training_code_hash(),
           "versions": library_versions()}
    if eval_every is not None:  # only then, so that every other run keeps its key
        run["eval_every"] = int(eval_every)
    return run


def cache_path(run: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """The cache file for these settings: ``<cache>/models/article_cnn-<hash>.npz``."""
    digest = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:16]
    return (cache_dir or settings().cache_dir) / "models" / f"article_cnn-{digest}.npz"


def save_trained(model: ArticleCNN, history: History, run: dict[str, Any], path: Path,
                 compress: bool = False) -> Path:
    """Write weights, history and settings to ``path`` atomically (temporary file, rename);
    ``compress`` zips the arrays (lossless)."""
    arrays = {**model.get_weights(), **{f"history/{k}": v for k, v in history.to_arrays().items()}}
    arrays["settings"] = np.array(json.dumps(run, sort_keys=True))
    return save_npz_atomically(path, arrays, compress=compress)


def load_trained(path: str | os.PathLike, run: dict[str, Any] | None = None) -> TrainedModel:
    """Load a cached model, checking it was trained with ``run`` (when given).

    Raises:
        ModelCacheError: the file is missing, damaged, of another format, or from other
            settings; the message says what to do, and ``reason`` the cause in a few words.
    """
    path = Path(path)
    again = f"Call trained_model() to train it again (it replaces {path})."
    if not path.is_file():
        raise ModelCacheError(f"No cached model at {path}: call trained_model() to train one.",
                              "no file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        saved = json.loads(str(arrays.pop("settings")))
        if not isinstance(saved, dict):
            raise ValueError("settings are not a dictionary")
    except Exception as err:
        raise ModelCacheError(f"The cached model {path} could not be read ({type(err).__name__}): "
                              f"it is damaged. {again}", "damaged file") from None
    if saved.get("format") != CACHE_FORMAT_VERSION:
        raise ModelCacheError(
            f"The cached model {path} has the file format {saved.get('format')} of another "
            f"version of mnist_lessons (this one reads {CACHE_FORMAT_VERSION}). {again}",
            f"file format {saved.get('format')}, not {CACHE_FORMAT_VERSION}")
    if run is not None and saved != run:
        differ = sorted(k for k in set(saved) | set(run) if saved.get(k) != run.get(k))
        raise ModelCacheError(
            f"The cached model {path} was trained with other settings (different: "
            f"{', '.join(differ)}; saved {saved}, asked {run}). {again}",
            f"trained with another {', '.join(differ)}")
    try:
        hp = Hyperparameters(**saved["hyperparameters"])
        model = ArticleCNN(hp, dropout_at_inference=saved["dropout_at_inference"])
        model.set_weights({k: v for k, v in arrays.items() if not k.startswith("history/")})
        history = History.from_arrays({k[len("history/"):]: v for k, v in arrays.items()
                                       if k.startswith("history/")})
    except (KeyError, ValueError, TypeError) as err:
        raise ModelCacheError(
            f"The cached model {path} does not hold the article's network ({err}). {again}",
            "not the article's network") from None
    return TrainedModel(model, history, saved, path, from_cache=True)


def course_model_record() -> dict[str, Any]:
    """The shipped course model's record: file, SHA-256, size in bytes, test accuracy measured
    on the file, the settings it was trained with, and how long it trained."""
    try:
        return json.loads(COURSE_MODEL_RECORD.read_text())
    except (OSError, ValueError) as err:
        raise ModelCacheError(f"The course model's record {COURSE_MODEL_RECORD} cannot be read "
                              f"({type(err).__name__}); reinstall mnist_lessons.", "no record") from None


def load_course_model(data: MNIST | None = None) -> TrainedModel:
    """The shipped course model, checked before use.

    Raises:
        ModelCacheError: the file's SHA-256 is not the recorded one, or the model was trained by
            other training code or on other data than ``data`` (MNIST when None), so it would be
            stale; ``reason`` says which.
    """
    record = course_model_record()
    try:
        digest = hashlib.sha256(COURSE_MODEL_FILE.read_bytes()).hexdigest()
    except OSError:
        raise ModelCacheError(f"The course model {COURSE_MODEL_FILE} is missing; reinstall "
                              "mnist_lessons.", "no shipped file") from None
    if digest != record["sha256"]:
        raise ModelCacheError(f"The course model {COURSE_MODEL_FILE} has SHA-256 {digest}, not the "
                              f"recorded {record['sha256']}: it is damaged; reinstall mnist_lessons.",
                              "shipped file damaged")
    result = load_trained(COURSE_MODEL_FILE)
    saved = result.settings
    expected = COURSE_DEFAULTS.replace(precision=saved["hyperparameters"]["precision"]).to_dict()
    if saved["hyperparameters"] != expected or saved["optimizer"] != "adam" \
            or saved["dropout_at_inference"] or saved["max_steps"] is not None \
            or saved.get("track_training") or saved.get("eval_every"):
        raise ModelCacheError("The shipped model was not trained with the course settings.",
                              "shipped model has other settings")
    if saved["code"] != training_code_hash():
        raise ModelCacheError("The shipped course model was trained by other training code than "
                              "this; rebuild it with python -m mnist_lessons.tools.course_model.",
                              "shipped model trained by other code")
    if saved["data"] != data_fingerprint(load_mnist() if data is None else data):
        raise ModelCacheError("The shipped course model was trained on other data.",
                              "shipped model trained on other data")
    return result


def _is_course_run(hp: Hyperparameters, optimizer: str, dropout_at_inference: bool) -> bool:
    return (hp.replace(precision="auto") == COURSE_DEFAULTS and optimizer == "adam"
            and not dropout_at_inference)


def trained_model(hp: Hyperparameters | None = None, *, optimizer: str = "adam",
                  dropout_at_inference: bool = False, data: MNIST | None = None,
                  max_steps: int | None = None, track_training: bool = False,
                  eval_every: int | None = None,
                  retrain: bool = False, shipped: bool = True, verbose: bool = True) -> TrainedModel:
    """The article's network trained with ``hp`` (course defaults if None), cached.

    The first call trains (printing progress) and saves; later calls load in about a second.
    A cached file that cannot be used (damaged, older format, other settings) is a miss: one
    line says why, and the model is trained again. The course settings load the course model
    shipped with the package (:func:`load_course_model`) in any profile; ``retrain=True``
    trains them anew instead. In the CI profile each run stops after a few
    steps, so the same notebook code runs fast.

    Args:
        hp: hyperparameters; :data:`COURSE_DEFAULTS` when None.
        optimizer: ``"adam"`` or ``"sgd"``.
        dropout_at_inference: the article's mistake of leaving dropout on at test time.
        data: MNIST, loaded when not given (a subset gets its own cache entry).
        max_steps: stop after this many steps (a small budget, e.g. for a learning-rate sweep);
            the CI profile's cap still applies when smaller.
        track_training: also record the accuracy on 5,000 training images at each
            evaluation (see :func:`mnist_lessons.train.train`).
        eval_every: also measure the validation accuracy every this many steps, for a
            training curve (see :func:`mnist_lessons.train.train`).
        retrain: ignore and overwrite the cached file (and the shipped course model).
        shipped: with the course settings, load the course model shipped with the package;
            ``False`` trains them here instead (or loads this machine's cached run), as
            chapter 10 does.
        verbose: print progress while training, and where the model came from.
    """
    hp = COURSE_DEFAULTS if hp is None else hp
    if not isinstance(hp, Hyperparameters):
        raise TypeError(f"hp must be a Hyperparameters, got {type(hp).__name__}")
    if optimizer not in train_module.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {train_module.OPTIMIZERS}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer))
                                  or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    cfg = settings()
    data = load_mnist() if data is None else data
    caps = [c for c in (max_steps, cfg.max_train_steps) if c is not None]
    cap = min(caps) if caps else None
    if eval_every is not None and (isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer))
                                   or eval_every < 1):
        raise ValueError(f"eval_every must be a positive integer or None, got {eval_every!r}")
    if shipped and not retrain and max_steps is None and not track_training and eval_every is None \
            and _is_course_run(hp, optimizer, dropout_at_inference):
        try:
            result = load_course_model(data)
        except ModelCacheError as miss:
            print(f"the shipped course model could not be used ({miss.reason}): training it")
        else:
            if verbose:
                print(f"loaded the course model shipped with mnist_lessons (test accuracy "
                      f"{result.history.final_test_accuracy:.2%})")
            return result
    run = run_settings(hp, optimizer, dropout_at_inference, cap, data, track_training, eval_every)
    path = cache_path(run, cfg.cache_dir)
    with only_one_trains(path, verbose):
        if path.exists() and not retrain:
            try:
                result = load_trained(path, run)
            except ModelCacheError as miss:
                print(f"the cached model could not be used ({miss.reason}): training it again")
            else:
                if verbose:
                    acc = result.history.final_test_accuracy
                    print(f"loaded the trained model from the cache (test accuracy {acc:.2%})")
                return result
        model = ArticleCNN(hp, dropout_at_inference=dropout_at_inference)
        history = train(model, data, hp, optimizer=optimizer, max_steps=cap,
                        track_training=track_training, eval_every=eval_every, verbose=verbose)
        save_trained(model, history, run, path)
    return TrainedModel(model, history, run, path, from_cache=False)


@contextmanager
def only_one_trains(path: Path, verbose: bool = True) -> Iterator[None]:
    """Hold the cache entry ``path`` while it is looked up and, on a miss, trained and saved.

    Two notebooks that ask for the same run at the same time (the book's pages are executed two
    at a time; a student may open two chapters) would otherwise both train it. With this lock
    the second one waits, saying so, and then loads what the first one saved. The lock is an
    OS file lock on a hidden file beside the entry (``.article_cnn-<hash>.lock``): it is
    released when the process holding it ends, even if it crashed. Where the OS has no such
    lock (Windows), both train, and the last atomic write wins.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.stem}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if verbose:
                print("another process is training this model: waiting for it, then loading it",
                      flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class SweepPoint:
    """One run of a learning-rate sweep.

    Attributes:
        optimizer: ``"adam"`` or ``"sgd"``.
        learning_rate: the constant rate of the run.
        steps: training steps run.
        validation_accuracy: share of the 5,000 validation images right after the run (the
            number a sweep chooses by; the test set is not measured at all).
        final_loss: mean training loss of the last 10 steps (nats per image).
    """

    optimizer: str
    learning_rate: float
    steps: int
    validation_accuracy: float
    final_loss: float


def learning_rate_sweep(optimizer: str, rates: Any, hp: Hyperparameters | None = None, *,
                        steps: int | None = None, data: MNIST | None = None,
                        verbose: bool = True) -> list[SweepPoint]:
    """Train one short run per learning rate and measure each on the validation images, cached.

    Each run starts from the same weights (``hp``'s seed) and sees the same batches; only the
    rate differs. A sweep *chooses* a setting, so it is judged on the validation images, never
    on the test set. Each point is kept as a small JSON file in the cache, keyed like a trained
    model (:func:`run_settings`), so a second call reads the results in a moment.

    Args:
        optimizer: ``"adam"`` or ``"sgd"``.
        rates: positive learning rates, e.g. ``np.logspace(-4, -1, 7)``.
        hp: the other settings (course defaults with a constant rate when None).
        steps: training steps per run; :attr:`mnist_lessons.config.Settings.sweep_steps` when
            None.
        data: MNIST (loaded when None).
    """
    from .data import validation_split
    from .train import accuracy_on

    if optimizer not in train_module.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {train_module.OPTIMIZERS}")
    rates = [float(r) for r in np.atleast_1d(np.asarray(rates, dtype=float))]
    if not rates or not all(np.isfinite(r) and r > 0 for r in rates):
        raise ValueError(f"rates must be positive learning rates, e.g. [1e-4, 1e-3, 1e-2], got {rates}")
    cfg = settings()
    steps = cfg.sweep_steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    hp = COURSE_DEFAULTS.replace(epochs=1, lr_decay=1.0, shift=0) if hp is None else hp
    data = load_mnist() if data is None else data
    split = validation_split(data)
    points = []
    for rate in rates:
        run_hp = hp.replace(learning_rate=rate)
        run = {"sweep": 1, **run_settings(run_hp, optimizer, max_steps=int(steps), data=data)}
        path = cache_path(run, cfg.cache_dir).with_suffix(".json")
        try:
            saved = json.loads(path.read_text())
            if saved.get("run") != run:
                raise ValueError("other settings")
            point = SweepPoint(**saved["point"])
        except (OSError, ValueError, TypeError, KeyError):
            model = ArticleCNN(run_hp)
            history = train(model, data, run_hp, optimizer=optimizer, max_steps=int(steps),
                            evaluate=False, verbose=False)
            losses = history.step_losses[-10:]
            point = SweepPoint(optimizer, rate, len(history.step_losses),
                               accuracy_on(model, split.x_val, split.y_val),
                               float(np.mean(losses)) if np.all(np.isfinite(losses)) else float("nan"))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".part")
            tmp.write_text(json.dumps({"run": run, "point": point.__dict__}, allow_nan=True))
            os.replace(tmp, path)
        if verbose:
            print(f"{optimizer:4s} rate {rate:8.2g}: validation accuracy "
                  f"{point.validation_accuracy:.2%} after {point.steps} steps")
        points.append(point)
    return points
