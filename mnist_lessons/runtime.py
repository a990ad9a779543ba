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
    """Seed Python's, NumPy's and TensorFlow's global random generators in one call.

    Those are what unseeded calls draw from (``tf.random.normal``, ``np.random.rand``,
    ``tf.nn.dropout`` without a seed...), so a chapter's own random examples and figures repeat
    run after run on the same machine. The course's network does not depend on it: its initial
    weights, shuffles, shifts and dropout masks are keyed on ``Hyperparameters.seed`` (and
    ``train`` seeds the global generators with it too). (GPU kernels may still differ in the
    last bits; see chapter 1.)

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


def has_fast_bfloat16(cpu_flags: str | None = None,
                      gpu_capabilities: list[tuple[int, int]] | None = None) -> bool:
    """True when this machine multiplies bfloat16 in hardware, so mixed precision pays.

    Training runs on the GPU when there is one, so the GPU decides: bfloat16 is fast from
    compute capability 8.0 on (A100 is 8.0, L4 8.9, H100 9.0); a T4 (7.5) emulates it, and a fast
    CPU beside it does not help. Without a GPU the CPU decides: it needs the AMX (``amx_bf16``)
    or AVX-512 BF16 (``avx512_bf16``) instructions of recent Xeons and EPYCs. Elsewhere
    bfloat16 is emulated and slower than float32.

    Both inputs can be passed in, to ask about a machine you are not on (the tests do):

    Args:
        cpu_flags: the CPU's feature flags, as the ``flags`` line of ``/proc/cpuinfo``
            (``"flags : fpu vme ... avx512_bf16 ..."``, the label is optional). Only whole
            words count: ``noamx_bf16`` is not ``amx_bf16``. None reads ``/proc/cpuinfo``
            (no such file, as on macOS or Windows: no flags).
        gpu_capabilities: the compute capability ``(major, minor)`` of each GPU, ``[]`` for
            none. None asks TensorFlow about the GPUs it sees (a GPU whose capability it
            cannot tell counts as slow).
    """
    if gpu_capabilities is None:
        import tensorflow as tf

        gpu_capabilities = []
        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            gpu_capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    for capability in gpu_capabilities:
        if not (isinstance(capability, tuple) and len(capability) == 2
                and all(isinstance(n, int) for n in capability)):
            raise ValueError(f"a GPU's compute capability is a pair such as (8, 0), got "
                             f"{capability!r}")
    if gpu_capabilities:
        return any(capability >= (8, 0) for capability in gpu_capabilities)
    if cpu_flags is None:
        try:
            with open("/proc/cpuinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        # One "flags : ..." line per core, all the same; "vmx flags" and others are not it.
        cpu_flags = next((line for line in lines if line.split(":")[0].strip() == "flags"), "")
    if not isinstance(cpu_flags, str):
        raise TypeError(f"cpu_flags is the flags line as one string, e.g. 'fpu vme avx2', got "
                        f"{type(cpu_flags).__name__}")
    words = set(cpu_flags.split())
    return "amx_bf16" in words or "avx512_bf16" in words


def resolve_precision(precision: str = "auto") -> str:
    """``"float32"`` or ``"bfloat16"``: the compute type training uses for ``precision``.

    ``"auto"`` picks bfloat16 where :func:`has_fast_bfloat16` says the hardware has it. Weights
    are always stored and updated in float32; in bfloat16 the convolution and FC layers (their
    multiplications, biases, ReLUs and pooling) compute on bfloat16 copies, while dropout, the
    output layer and the loss stay in float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}")
    if precision == "auto":
        return "bfloat16" if has_fast_bfloat16() else "float32"
    return precision
