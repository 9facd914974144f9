"""Read the `params_N.pkl` files of the SORL authors' JAX code without running any code they could carry.

Their code writes `pickle.dump({"agent": flax.serialization.to_state_dict(agent)})`: nested dicts whose leaves
are `jax._src.array._reconstruct_array(fun, args, arr_state, aval_state)` calls around a plain numpy array
state. A restricted unpickler resolves only the four globals such a file uses (numpy's `_reconstruct`,
`numpy.ndarray`, `numpy.dtype`, and jax's `_reconstruct_array`, rebuilt here as a numpy function); any other
global is refused before anything is called, so a file that would run code is rejected, not executed.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class AuthorsRunError(ValueError):
    """A run folder or file of the authors' code that cannot be imported; the message says why."""


def _array_from_state(fun, args, arr_state, aval_state) -> np.ndarray:
    """jax's `_reconstruct_array` without jax: the numpy array it would have put on a device."""
    if fun is not _np_reconstruct or not args or args[0] is not np.ndarray:
        raise AuthorsRunError("an array in the file is not stored as a plain numpy array")
    array = fun(*args)
    array.__setstate__(arr_state)
    if array.dtype.hasobject:
        raise AuthorsRunError("an array in the file holds Python objects, not numbers")
    return array


ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("jax._src.array", "_reconstruct_array"): _array_from_state,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that knows only ALLOWED_GLOBALS; any other global ends the load with an error naming it."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise AuthorsRunError(
                f"it refers to {module}.{name}, which a checkpoint of the authors' code never holds; "
                "refused without running it"
            ) from None


def load_params(path: str | Path) -> dict:
    """The dict stored in a `params_N.pkl`, with numpy arrays as leaves; AuthorsRunError if it is not one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        raise AuthorsRunError(f"{path.name} could not be read") from None
    try:
        tree = RestrictedUnpickler(io.BytesIO(data)).load()
    except AuthorsRunError as exc:
        raise AuthorsRunError(f"{path.name} cannot be imported: {exc}") from None
    except Exception:  # truncated, random bytes, wrong protocol, bad array state...
        raise AuthorsRunError(
            f"{path.name} is not a checkpoint of the authors' code (not a readable pickle of arrays)"
        ) from None
    if not isinstance(tree, dict) or not isinstance(tree.get("agent"), dict):
        raise AuthorsRunError(f"{path.name} is not a checkpoint of the authors' code (no 'agent' entry)")
    return tree["agent"]
