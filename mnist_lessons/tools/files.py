"""Writing cache files safely: never leave a half-written file where a reader would find it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def save_npz_atomically(path: Path, arrays: dict[str, np.ndarray], compress: bool = False) -> Path:
    """Save ``arrays`` to the ``.npz`` at ``path`` all at once, or not at all.

    The arrays go to a temporary file in the same folder, which is renamed over ``path`` only
    when complete (a rename within one file system is atomic). If anything fails, or the
    process is killed, the temporary file is removed or left as ``*.part``, never as ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
