"""mnist_lessons: the code behind the MNIST Lessons book, one module per concern.

- :mod:`~mnist_lessons.config`   settings read from the environment (one place)
- :mod:`~mnist_lessons.runtime`  versions, devices, seeding, Colab detection
- :mod:`~mnist_lessons.data`     loading MNIST offline, scaling, one-hot, batches
- :mod:`~mnist_lessons.viz`      the course's plotting style and figures

Chapters start with ``setup_course()``, which fixes the random seed and the plotting style.
"""

from __future__ import annotations

import os

# TensorFlow logs CPU-feature and oneDNN notes to stderr on import; in a course they are noise
# that would land in every rendered page. Set before any module imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def setup_course(seed: int = 0) -> None:
    """Fix the random seed, keep float32 exact, and apply the course's plotting style.

    One call at the top of every chapter makes its numbers and figures repeatable:

    - the seed of Python's, NumPy's and TensorFlow's random generators (:func:`~mnist_lessons.
      runtime.set_seed`);
    - float32 multiplications in full float32. On NVIDIA GPUs since Ampere (A100, L4, H100)
      TensorFlow otherwise multiplies float32 matrices in TensorFloat-32, which keeps only 10
      bits of mantissa (about 3 decimal digits), and the chapters' comparisons of NumPy with
      TensorFlow to 1e-5 would fail there. Mixed-precision training asks for bfloat16
      explicitly and is not affected.

    It returns nothing, so the call adds no output to the chapter.
    """
    import tensorflow as tf

    from .runtime import set_seed
    from .viz import use_course_style

    use_course_style()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    set_seed(seed)
