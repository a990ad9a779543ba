"""Values as plain JSON, so the grader and a student's kernel exchange data, never code.

The grader (:mod:`mnist_lessons.tools.grade`) runs the book's checkers in its own process and
the student's function in a sandboxed kernel. Each call crosses between the two as JSON made
by :func:`encode`: numbers, strings, lists, tuples, dicts, NumPy arrays and scalars (their raw
bytes, so every bit survives), TensorFlow tensors, NumPy random generators (their state) and,
from the grader only, callbacks (a number the kernel asks back about). Anything else travels as
its type's name and a short ``repr``: an answer of the wrong type is reported by its name, and
nothing is ever unpickled or evaluated.

This module is imported on both sides and needs only NumPy (TensorFlow when a tensor arrives).
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any, Callable

import numpy as np

#: Marks an ``input()`` prompt that is a callback from the kernel to the grader.
CALLBACK_MARK = "\x00mnist-grade-callback:"
#: The MIME type of the display message that carries a call's outcome back to the grader.
RESULT_MIME = "application/x-mnist-grade+json"
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
MAX_DEPTH = 32
MAX_ITEMS = 1_000_000


class Opaque:
    """Stands, on the grader's side, for a value that cannot cross as data (a class instance,
    a module, a generator...): it has the original type's name and ``repr``, and nothing else."""

    def __repr__(self) -> str:
        return self._repr  # type: ignore[attr-defined]


def _opaque(type_name: str, text: str) -> Opaque:
    cls = type(str(type_name)[:80] or "object", (Opaque,), {"_repr": str(text)[:300]})
    return cls()


def _tensor_types() -> tuple:
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return ()
    return tuple(t for t in (getattr(tf, "Tensor", None), getattr(tf, "Variable", None)) if t)


def _array(a: np.ndarray) -> dict:
    if not a.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        a = a.copy(order="C")
    if a.dtype.hasobject:
        return {"t": "list", "v": [encode(x) for x in a.ravel().tolist()], "shape": list(a.shape)}
    return {"dtype": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def _state_part(value: Any) -> Any:
    """JSON for the arrays inside a bit generator's state (MT19937's key, Philox's counter...):
    their dtype and values, integers written out in full so every bit survives."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        return {"__array__": value.tolist(), "dtype": value.dtype.str}
    raise ValueError(f"a random generator's state holds a {type(value).__name__}, which cannot "
                     "be graded: use np.random.default_rng(seed)")


def _state_array(obj: dict) -> Any:
    if set(obj) == {"__array__", "dtype"}:
        dtype = np.dtype(obj["dtype"])
        if dtype.kind not in "iu":
            raise ValueError(f"unexpected dtype {obj['dtype']!r} in a random generator's state")
        return np.array(obj["__array__"], dtype=dtype)
    return obj


def encode(value: Any, callbacks: list[Callable] | None = None, _depth: int = 0) -> Any:
    """``value`` as JSON-ready data (see the module docstring).

    ``callbacks``: where the grader keeps the functions it passes; each is sent as its index.
    Without it (in the kernel), a function travels as an opaque value.
    """
    if _depth > MAX_DEPTH:
        raise ValueError("a value nested more than 32 levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}  # any size, as text
    if isinstance(value, float):
        return {"t": "float", "v": value.hex()}  # every bit, nan and inf included
    if isinstance(value, np.ndarray):
        if value.size > 50_000_000:
            raise ValueError(f"an array of {value.size:,} values is too large to grade")
        return {"t": "nd", **_array(value)}
    if isinstance(value, np.generic):
        return {"t": "np", **_array(np.asarray(value))}
    tensors = _tensor_types()
    if tensors and isinstance(value, tensors):
        return {"t": "tf", **_array(np.asarray(value.numpy()))}
    if isinstance(value, np.random.Generator):
        return {"t": "rng", "state": json.dumps(value.bit_generator.state, default=_state_part)}
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise ValueError(f"a {type(value).__name__} of {len(value):,} items is too long to grade")
        return {"t": type(value).__name__ if type(value) in (list, tuple) else "list",
                "v": [encode(x, callbacks, _depth + 1) for x in value]}
    if isinstance(value, dict) and len(value) <= MAX_ITEMS:
        return {"t": "dict", "v": [[encode(k, callbacks, _depth + 1), encode(v, callbacks, _depth + 1)]
                                   for k, v in value.items()]}
    if callbacks is not None and callable(value):
        callbacks.append(value)
        return {"t": "cb", "id": len(callbacks) - 1}
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ is the student's; keep the type
        text = f"<{type(value).__name__}>"
    return {"t": "obj", "type": type(value).__name__, "repr": text[:300]}


def _from_array(d: dict) -> np.ndarray:
    dtype = np.dtype(d["dtype"])
    if dtype.hasobject:
        raise ValueError("object arrays travel as lists")
    shape = tuple(int(n) for n in d["shape"])
    raw = base64.b64decode(d["b64"])
    if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError("an array's bytes do not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def decode(data: Any, callback: Callable[[int], Callable] | None = None) -> Any:
    """The value :func:`encode` made ``data`` from. ``callback(i)`` makes the stand-in for the
    grader's ``i``-th function (in the kernel); without it a callback is an error."""
    if data is None or isinstance(data, (bool, str)):
        return data
    if not isinstance(data, dict) or "t" not in data:
        raise ValueError(f"not an encoded value: {str(data)[:80]}")
    kind = data["t"]
    if kind == "int":
        return int(data["v"])
    if kind == "float":
        return float.fromhex(data["v"])
    if kind == "nd":
        return _from_array(data)
    if kind == "np":
        return _from_array(data)[()]
    if kind == "tf":
        import tensorflow as tf

        return tf.constant(_from_array(data))
    if kind == "rng":
        state = json.loads(data["state"], object_hook=_state_array)
        if state.get("bit_generator") not in BIT_GENERATORS:
            raise ValueError(f"unknown bit generator {str(state.get('bit_generator'))[:40]!r}")
        generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
        generator.bit_generator.state = state
        return generator
    if kind in ("list", "tuple"):
        items = [decode(x, callback) for x in data["v"]]
        if "shape" in data:
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out.reshape(data["shape"])
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {decode(k, callback): decode(v, callback) for k, v in data["v"]}
    if kind == "cb":
        if callback is None:
            raise ValueError("a callback where none is expected")
        return callback(int(data["id"]))
    if kind == "obj":
        return _opaque(data.get("type", "object"), data.get("repr", ""))
    raise ValueError(f"unknown encoded kind {kind!r}")
