"""Write `params_N.pkl` files in the byte format of the SORL authors' code, without jax (for tests).

Their code pickles `{"agent": flax.serialization.to_state_dict(agent)}`, and jax pickles each array as
`jax._src.array._reconstruct_array(numpy's _reconstruct, (ndarray, (0,), b'b'), array state, {'weak_type': False})`.
Here every numpy leaf is written exactly so: a pure-Python pickler emits that global by name.
"""

from __future__ import annotations

import io
import pickle
import types
from pathlib import Path

import numpy as np


def _reconstruct_array(*args):  # a stand-in, written to the file under jax's name
    raise AssertionError("never called: only its name is written")


class _JaxArray:
    def __init__(self, array: np.ndarray):
        self.array = np.array(array, order="C")  # keeps 0-d arrays 0-d

    def __reduce__(self):
        fun, args, state = self.array.__reduce__()
        return _reconstruct_array, (fun, args, state, {"weak_type": False})


class _Pickler(pickle._Pickler):
    dispatch = {**pickle._Pickler.dispatch, types.FunctionType: lambda self, obj: self.save_global(obj)}

    def save_global(self, obj, name=None):
        if obj is _reconstruct_array:
            self.save("jax._src.array")
            self.save("_reconstruct_array")
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _wrap(tree):
    if isinstance(tree, dict):
        return {key: _wrap(value) for key, value in tree.items()}
    return _JaxArray(np.asarray(tree))


def dumps(agent_state: dict) -> bytes:
    """The bytes of a params_N.pkl holding {"agent": agent_state} (nested dicts of numpy arrays)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=4).dump({"agent": _wrap(agent_state)})
    return buffer.getvalue()


def write_params(path: Path, agent_state: dict) -> Path:
    Path(path).write_bytes(dumps(agent_state))
    return Path(path)
