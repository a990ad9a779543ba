"""What the code runs on: versions, devices, seeding, and whether we are inside Colab.

Chapter 1 introduces these functions; every later chapter starts with :func:`set_seed`
(through :func:`mnist_lessons.setup_course`) so that its figures are the same on every run.
"""

from __future__ import annotations

import platform
import random
import sys
from typing import Any

import numpy as np


def in_colab() -> bool:
    """True when running inside Google Colab (its runtime has imported ``google.colab``)."""
    return "google.colab" in sys.modules


def set_seed(seed: int = 0) -> int:
    """Seed Python's, NumPy's and TensorFlow's random generators in one call.

    The same seed gives the same shuffles, the same initial weights and the same dropout masks,
    so a chapter's figures repeat run after run on the same machine. (GPU kernels may still
    differ in the last bits; see chapter 1.)

    Args:
        seed: a non-negative integer.

    Returns:
        The seed, so a notebook can print what it used.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    import tensorflow as tf  # imported here so that data-only code never pays for TensorFlow

    tf.random.set_seed(seed)
    return seed


def describe_runtime() -> dict[str, Any]:
    """Versions and devices of the running TensorFlow, as a plain dictionary.

    Returns:
        ``python``, ``tensorflow``, ``keras``, ``numpy`` (version strings), ``devices`` (a list
        of ``(kind, name)`` pairs such as ``("CPU", "/physical_device:CPU:0")``), ``gpu`` (True if
        a GPU is visible), ``eager`` (True: TF2 runs operations immediately) and ``colab``.
    """
    import keras
    import tensorflow as tf

    devices = [(d.device_type, d.name) for d in tf.config.list_physical_devices()]
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "devices": devices,
        "gpu": any(kind == "GPU" for kind, _ in devices),
        "eager": tf.executing_eagerly(),
        "colab": in_colab(),
    }


PRECISIONS = ("auto", "float32", "bfloat16")


def has_fast_bfloat16() -> bool:
    """True when this machine multiplies bfloat16 in hardware, so mixed precision pays.

    That is a GPU of compute capability 8.0 or newer (A100, H100, L4...), or a CPU with AMX or
    AVX-512 BF16 instructions (recent Xeons). Elsewhere bfloat16 is emulated and slower.
    """
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (8, 0):
            return True
    if tf.config.list_physical_devices("GPU"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_precision(precision: str = "auto") -> str:
    """``"float32"`` or ``"bfloat16"``: the compute type training uses for ``precision``.

    ``"auto"`` picks bfloat16 where :func:`has_fast_bfloat16` says the hardware has it. Weights
    are always stored and updated in float32; only the multiplications run in bfloat16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}")
    if precision == "auto":
        return "bfloat16" if has_fast_bfloat16() else "float32"
    return precision
