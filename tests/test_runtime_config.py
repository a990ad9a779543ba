"""mnist_lessons.config and mnist_lessons.runtime: settings, seeding, versions and devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons import setup_course
from mnist_lessons.config import default_cache_dir, settings
from mnist_lessons.runtime import describe_runtime, in_colab, set_seed


def test_settings_read_the_three_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_LESSONS_DATA", str(tmp_path / "m.npz"))
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "CI")
    s = settings()
    assert s.data_path == tmp_path / "m.npz" and s.cache_dir == tmp_path / "c"
    assert s.profile == "ci" and s.is_ci


def test_settings_defaults(monkeypatch, tmp_path):
    for name in ("MNIST_LESSONS_DATA", "MNIST_LESSONS_CACHE", "MNIST_LESSONS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    s = settings()
    assert s.data_path is None and s.profile == "full" and not s.is_ci
    assert s.cache_dir == default_cache_dir() == Path(tmp_path) / "mnist_lessons"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "fast")
    with pytest.raises(ValueError, match="not a profile; use one of"):
        settings()


def test_set_seed_makes_numpy_and_tensorflow_repeat():
    set_seed(42)
    a = (np.random.rand(3), tf.random.normal([3]).numpy())
    set_seed(42)
    b = (np.random.rand(3), tf.random.normal([3]).numpy())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    set_seed(43)
    assert not np.array_equal(tf.random.normal([3]).numpy(), b[1])


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, None])
def test_set_seed_rejects_what_is_not_a_seed(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        set_seed(bad)


def test_describe_runtime_reports_versions_and_at_least_a_cpu():
    info = describe_runtime()
    assert info["tensorflow"] == tf.__version__
    assert info["eager"] is True and info["colab"] is False and in_colab() is False
    assert ("CPU", "/physical_device:CPU:0") in info["devices"]
    assert info["gpu"] == bool(tf.config.list_physical_devices("GPU"))


def test_setup_course_seeds_and_styles():
    import matplotlib

    assert setup_course(7) is None
    assert matplotlib.rcParams["image.cmap"] == "gray_r"
    first = tf.random.uniform([2]).numpy()
    setup_course(7)
    np.testing.assert_array_equal(first, tf.random.uniform([2]).numpy())


def test_resolve_precision_follows_the_hardware(monkeypatch):
    from mnist_lessons import runtime

    assert runtime.resolve_precision("float32") == "float32"
    assert runtime.resolve_precision("bfloat16") == "bfloat16"
    monkeypatch.setattr(runtime, "has_fast_bfloat16", lambda: True)
    assert runtime.resolve_precision("auto") == "bfloat16"
    monkeypatch.setattr(runtime, "has_fast_bfloat16", lambda: False)
    assert runtime.resolve_precision() == "float32"
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        runtime.resolve_precision("float16")


def test_has_fast_bfloat16_matches_the_cpu_flags():
    from mnist_lessons.runtime import has_fast_bfloat16

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    expected = " amx_bf16" in flags or " avx512_bf16" in flags
    if not tf.config.list_physical_devices("GPU"):
        assert has_fast_bfloat16() == expected
