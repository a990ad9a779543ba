"""The trained-model cache: train once, then load the saved weights in every later chapter.

:func:`trained_model` returns the article's network trained with the given settings (the
course defaults when none are given). The first call trains it and saves the weights and the
training history to the cache folder, in a file named after a hash of the settings; later calls,
in any chapter, load that file in a second instead of training again. Files are written
atomically, and a file that does not match the settings, or cannot be read, is an error that
says what to do, never a silently wrong model.

The CI profile (``MNIST_LESSONS_PROFILE=ci``) caps every run at a few steps; its files are
separate from the full ones because the cap is part of the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import settings
from .data import MNIST, load_mnist
from .tools.files import save_npz_atomically
from .model import COURSE_DEFAULTS, ArticleCNN, Hyperparameters
from .train import History, train

CACHE_FORMAT_VERSION = 1

class ModelCacheError(RuntimeError):
    """A cached model could not be used; the message says what happened and what to do."""


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


def run_settings(hp: Hyperparameters, optimizer: str = "adam",
                 dropout_at_inference: bool = False, max_steps: int | None = None) -> dict[str, Any]:
    """Everything that determines a trained model, as one JSON-able dictionary."""
    return {"format": CACHE_FORMAT_VERSION, "hyperparameters": hp.to_dict(),
            "optimizer": optimizer, "dropout_at_inference": bool(dropout_at_inference),
            "max_steps": max_steps}


def cache_path(run: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """The cache file for these settings: ``<cache>/models/article_cnn-<hash>.npz``."""
    digest = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:16]
    return (cache_dir or settings().cache_dir) / "models" / f"article_cnn-{digest}.npz"


def save_trained(model: ArticleCNN, history: History, run: dict[str, Any], path: Path) -> Path:
    """Write weights, history and settings to ``path`` atomically (temporary file, rename)."""
    arrays = {**model.get_weights(), **{f"history/{k}": v for k, v in history.to_arrays().items()}}
    arrays["settings"] = np.array(json.dumps(run, sort_keys=True))
    return save_npz_atomically(path, arrays)


def load_trained(path: str | os.PathLike, run: dict[str, Any] | None = None) -> TrainedModel:
    """Load a cached model, checking it was trained with ``run`` (when given).

    Raises:
        ModelCacheError: the file is missing, damaged, from another version, or from other
            settings; the message says how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelCacheError(f"No cached model at {path}: call trained_model() to train one.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        saved = json.loads(str(arrays.pop("settings")))
    except Exception as err:
        raise ModelCacheError(
            f"The cached model {path} could not be read ({type(err).__name__}); it is damaged. "
            f"Delete it (rm {path}) and call trained_model() again to retrain it.") from None
    if saved.get("format") != CACHE_FORMAT_VERSION:
        raise ModelCacheError(
            f"The cached model {path} was written by another version of mnist_lessons (format "
            f"{saved.get('format')}, expected {CACHE_FORMAT_VERSION}). Delete it (rm {path}) and "
            "call trained_model() again.")
    if run is not None and saved != run:
        raise ModelCacheError(
            f"The cached model {path} was trained with other settings ({saved}) than asked "
            f"({run}). Delete it (rm {path}) and call trained_model() again.")
    try:
        hp = Hyperparameters(**saved["hyperparameters"])
        model = ArticleCNN(hp, dropout_at_inference=saved["dropout_at_inference"])
        model.set_weights({k: v for k, v in arrays.items() if not k.startswith("history/")})
        history = History.from_arrays({k[len("history/"):]: v for k, v in arrays.items()
                                       if k.startswith("history/")})
    except (KeyError, ValueError, TypeError) as err:
        raise ModelCacheError(
            f"The cached model {path} does not hold the article's network ({err}). Delete it "
            f"(rm {path}) and call trained_model() again.") from None
    return TrainedModel(model, history, saved, path, from_cache=True)


def trained_model(hp: Hyperparameters | None = None, *, optimizer: str = "adam",
                  dropout_at_inference: bool = False, data: MNIST | None = None,
                  retrain: bool = False, verbose: bool = True) -> TrainedModel:
    """The article's network trained with ``hp`` (course defaults if None), cached.

    The first call trains (printing progress) and saves; later calls load in about a second.
    In the CI profile each run stops after a few steps, so the same notebook code runs fast.

    Args:
        hp: hyperparameters; :data:`COURSE_DEFAULTS` when None.
        optimizer: ``"adam"`` or ``"sgd"``.
        dropout_at_inference: the article's mistake of leaving dropout on at test time.
        data: MNIST, loaded when not given.
        retrain: ignore and overwrite the cached file.
        verbose: print progress while training, and where the model came from.
    """
    hp = hp or COURSE_DEFAULTS
    if not isinstance(hp, Hyperparameters):
        raise TypeError(f"hp must be a Hyperparameters, got {type(hp).__name__}")
    cfg = settings()
    run = run_settings(hp, optimizer, dropout_at_inference, cfg.max_train_steps)
    path = cache_path(run, cfg.cache_dir)
    if path.exists() and not retrain:
        result = load_trained(path, run)
        if verbose:
            acc = result.history.final_test_accuracy
            print(f"loaded the trained model from the cache (test accuracy {acc:.2%})")
        return result
    data = data or load_mnist()
    model = ArticleCNN(hp, dropout_at_inference=dropout_at_inference)
    history = train(model, data, hp, optimizer=optimizer, max_steps=cfg.max_train_steps,
                    verbose=verbose)
    save_trained(model, history, run, path)
    return TrainedModel(model, history, run, path, from_cache=False)
