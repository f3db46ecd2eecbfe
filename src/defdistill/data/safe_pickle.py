"""An unpickler that can only rebuild plain builtins and numpy arrays.

CIFAR-10's "python version" is a set of pickles; a planted pickle must not be able to run
code. Opcodes that call arbitrary objects are refused before unpickling, and the only
globals resolved are numpy's array reconstruction and dtypes of simple types.
"""
from __future__ import annotations

import io
import math
import pickle
import pickletools
from typing import ClassVar

import numpy as np

from defdistill.data.dataset import DataError

_SIMPLE_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})


_NDARRAY = object()  # what the name numpy.ndarray resolves to while unpickling


class _DTypeStub:
    """Stands in for ``numpy.dtype`` while unpickling: plain numeric types only.

    numpy's own ``dtype.__setstate__`` trusts its input (a malformed state crashes the
    interpreter with a segmentation fault), so the state is checked here and numpy never
    sees it.
    """

    def __init__(self, obj: object, align: object = False, copy: object = False) -> None:
        name = obj.decode("latin1") if isinstance(obj, bytes) else obj
        if not isinstance(name, str) or name not in _SIMPLE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported numpy dtype {obj!r}")
        self.dtype = np.dtype(name)

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) < 5:
            raise pickle.UnpicklingError("malformed numpy dtype state")
        order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
        if order not in ("|", "<", ">", "=") or any(v is not None for v in state[2:5]):
            raise pickle.UnpicklingError("malformed or structured numpy dtype")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder("<" if order == "<" else ">")


class _ArrayStub:
    """Stands in for a ``numpy.ndarray`` while unpickling; checks its state and keeps a view.

    Nothing is copied while unpickling: one bytes object referenced by many arrays (the
    pickle's memo) would otherwise cost a copy per reference. :func:`_resolve` copies the
    arrays actually returned, within a budget of the pickle's own size.
    """

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        if (
            not isinstance(shape, tuple) or len(shape) > 32
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or not isinstance(dtype, _DTypeStub) or not isinstance(fortran, bool | int)
            or not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.dtype.itemsize
        ):  # fmt: skip
            raise pickle.UnpicklingError("malformed numpy array (shape, dtype or size)")
        # a view of raw
        self.array = np.ndarray(shape, dtype.dtype, buffer=raw, order="F" if fortran else "C")


def _reconstruct(cls: object, shape: object, typecode: object) -> _ArrayStub:
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("only numpy.ndarray can be reconstructed")
    return _ArrayStub()


def _encode_latin1(text: object, encoding: object = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 encoded bytes are supported")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds builtin containers and plain numeric numpy arrays.

    No global is ever imported: the few names a CIFAR-10 batch refers to resolve to the
    checked stand-ins above, everything else is refused.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], object]] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _DTypeStub,
        ("_codecs", "encode"): _encode_latin1,
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _resolve(obj: object, budget: int) -> object:
    """Replace the array stand-ins at the top level (and in a top-level dict) by arrays.

    The arrays copied may take at most ``budget`` bytes in all (the pickle's size: each
    array's bytes are in the pickle once, unless the memo makes many arrays of one buffer).
    """
    spent = 0

    def array(stub: _ArrayStub) -> np.ndarray:
        nonlocal spent
        if stub.array is None:
            raise pickle.UnpicklingError("numpy array without data")
        spent += stub.array.nbytes
        if spent > budget:
            raise pickle.UnpicklingError("arrays larger than the pickle (memo references to one buffer)")
        return stub.array.copy()

    if isinstance(obj, _ArrayStub):
        return array(obj)
    if isinstance(obj, dict):
        return {k: array(v) if isinstance(v, _ArrayStub) else v for k, v in obj.items()}
    return obj


# Opcodes a CIFAR-10 batch never holds: out-of-band buffers, persistent ids, the extension
# registry, and bytearrays (whose size the C unpickler allocates before reading).
_REFUSED_OPCODES = frozenset({
    "BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER", "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4",
})  # fmt: skip


def _check_opcodes(data: bytes) -> None:
    """Walk the opcodes without building anything (``pickletools``).

    Refuses the opcodes above and memo indices beyond the number of opcodes seen: the C
    unpickler sizes its memo by the largest index, so one ``LONG_BINPUT 4000000000``
    would make it allocate and clear gigabytes. Malformed streams raise ``ValueError``.
    """
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in _REFUSED_OPCODES:
            raise pickle.UnpicklingError(f"opcode {op.name} is not allowed")
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not (isinstance(arg, int) and 0 <= arg <= count):
            raise pickle.UnpicklingError(f"memo index {arg} out of range")


def safe_unpickle(data: bytes, source: str) -> object:
    """Unpickle ``data`` allowing only plain containers and numeric numpy arrays.

    Any failure (refused global, malformed or truncated stream, absurd sizes) is a
    :class:`DataError`: the bytes are untrusted.
    """
    try:
        _check_opcodes(data)
        return _resolve(_RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load(), len(data))
    except pickle.UnpicklingError as err:
        raise DataError(f"{source}: unsafe or corrupt pickle ({err}); not a CIFAR-10 batch") from err
    except Exception as err:  # untrusted bytes: EOFError, MemoryError, OverflowError, ...
        raise DataError(
            f"{source}: truncated or corrupt pickle ({type(err).__name__}: {err}); download again"
        ) from err
