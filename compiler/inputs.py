"""The checks a network's input goes through before anything runs: type, values and shape.

onnxruntime refuses an input whose element type differs from the model's; cimtile does the same rather
than cast silently. Every refusal is a one-line :class:`CompileError` naming the input and what was expected.

==================  ==========================================================================================
model input         accepted arrays
==================  ==========================================================================================
float               float16, float32 or float64 (computed in float32, as the graph's float input), no NaN
uint8 / int8 codes  any integer dtype whose values lie in the code range (0..255, -128..127)
==================  ==========================================================================================

The first dimension is the batch: any size of at least 1. The others must equal the compiled model's.
"""

from __future__ import annotations

import numpy as np

from .errors import CompileError
from .ir import Tensor

__all__ = ["batch_hint", "check_input", "declared_shape"]

_KIND_NAMES = {"U": "strings", "S": "byte strings", "O": "Python objects", "V": "records", "c": "complex numbers",
               "b": "booleans", "M": "dates", "m": "time deltas"}


def declared_shape(t: Tensor, meta: dict | None) -> str:
    """The input's shape as the model declares it: symbolic dimensions by name (``[N, 1, 8, 8]``)."""
    dims = (meta or {}).get("input_shapes", {}).get(t.name)
    if dims is None or len(dims) != len(t.shape):  # a bundle from before the declared shapes were kept
        dims = ["N", *t.shape[1:]] if t.shape else []
    return "[" + ", ".join(str(d) for d in dims) + "]"


def batch_hint(t: Tensor, meta: dict | None, shape: tuple) -> str:
    """A hint for a host step that failed: the model was exported for a fixed batch size other than the input's."""
    dims = (meta or {}).get("input_shapes", {}).get(t.name)
    if dims and isinstance(dims[0], int) and shape and dims[0] != shape[0]:
        return (f" (the model declares a fixed batch size of {dims[0]}, input {declared_shape(t, meta)}, and the "
                f"input has {shape[0]}: run batches of {dims[0]}, or export the model with a dynamic batch dimension)")
    return ""


def check_input(x, t: Tensor, meta: dict | None = None) -> np.ndarray:
    """``x`` checked against the model's input ``t``; returns the array the runtime feeds (float32 or int64).

    Raises
    ------
    CompileError
        Not a numeric array, integers for a float input or floats for a codes input, codes out of range,
        NaN values, an empty batch, or a shape other than the model's (the message shows the declared shape,
        symbolic dimensions by name).
    """
    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists and the like
        raise CompileError(f"input {t.name!r}: not an array ({str(e).splitlines()[0]})") from None
    kind = x.dtype.kind
    if kind in _KIND_NAMES:
        raise CompileError(f"input {t.name!r}: an array of {_KIND_NAMES[kind]} (dtype {x.dtype}); expected "
                           + ("float32 numbers" if t.kind == "float" else f"{t.dtype} codes"))
    want = declared_shape(t, meta)
    if x.ndim != len(t.shape) or tuple(x.shape[1:]) != tuple(t.shape[1:]):
        raise CompileError(f"input {t.name!r}: shape {tuple(x.shape)} does not match the model's input {want} "
                           "(the first dimension is the batch, any size)")
    if x.size == 0:
        raise CompileError(f"input {t.name!r}: empty (shape {tuple(x.shape)}); expected at least one input {want}")
    if t.kind == "float":
        if kind != "f":
            raise CompileError(f"input {t.name!r}: {x.dtype} array for the model's float input (onnxruntime refuses "
                               "it too); convert it first, e.g. x.astype(np.float32)")
        nan = np.isnan(x)
        if nan.any():
            first = tuple(int(i) for i in np.argwhere(nan)[0])
            raise CompileError(f"input {t.name!r}: {int(nan.sum())} NaN value(s), the first at index {first}")
        return x.astype(np.float32)
    if t.kind == "codes":
        if kind not in "iu":
            raise CompileError(f"input {t.name!r}: {x.dtype} array for the model's {t.dtype} input; expected "
                               f"integer codes in {t.spec.lo}..{t.spec.hi}")
        lo, hi = int(x.min()), int(x.max())
        if lo < t.spec.lo or hi > t.spec.hi:
            raise CompileError(f"input {t.name!r}: codes {lo}..{hi} outside the {t.dtype} range "
                               f"{t.spec.lo}..{t.spec.hi}")
        return x.astype(np.int64)
    return x  # pragma: no cover - graph inputs are float or codes (the frontend refuses other types)
