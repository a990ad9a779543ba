"""Shared fixtures: the real MNIST, loaded once per test session."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mnist_lessons.data import MNIST, load_mnist  # noqa: E402


@pytest.fixture(scope="session")
def mnist() -> MNIST:
    """The real 60,000/10,000 MNIST from the course cache (prepared by the set-up)."""
    return load_mnist()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
