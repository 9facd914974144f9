"""Grid-file values checked against the option types of a `train` / `evaluate` config (tuples, literals, unions)."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields

from ..config import SORLConfig

HIDDEN_AGENT = {"obs_dim", "action_dim"}  # taken from the data, as on the command line


def option_types(config_class: type) -> dict[str, object]:
    """Dotted option name -> type, for a train or evaluate config class (agent options as `agent.NAME`)."""
    hints = typing.get_type_hints(config_class)
    out = {}
    for f in fields(config_class):
        if f.name == "agent":
            agent_hints = typing.get_type_hints(SORLConfig)
            out.update({f"agent.{a.name}": agent_hints[a.name] for a in fields(SORLConfig) if a.name not in HIDDEN_AGENT})
        else:
            out[f.name] = hints[f.name]
    return out


def is_tuple(hint) -> bool:
    """A tuple-valued option (m_inf, n, ...): a list of scalars is its value, a list of lists a product axis."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(is_tuple(a) for a in typing.get_args(hint))
    return typing.get_origin(hint) is tuple


def convert(value, hint):
    """The value as the option's type, or TypeError with what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(value, arg)
            except TypeError:
                pass
        raise TypeError(" or ".join(describe(a) for a in args if a is not type(None)))
    if origin is typing.Literal:
        if value in args:
            return value
        raise TypeError(describe(hint))
    if origin is tuple:  # a scalar is a one-element list, as `--n 4` is on the command line
        try:
            return tuple(convert(v, args[0]) for v in (value if isinstance(value, list) else [value]))
        except TypeError:
            raise TypeError(describe(hint)) from None
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise TypeError(describe(hint))


def describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin is tuple:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def shown(value) -> str:
    """A value as it is written in TOML."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def fails(value, hint) -> bool:
    """Whether `value` is not of the option type `hint`."""
    try:
        convert(value, hint)
        return False
    except TypeError:
        return True
