"""Config dataclasses that validate themselves, one style for every config section.

A config dataclass derives from `Validated`, names its section (`SECTION = "train"`) and
declares its fields with plain defaults, `choice(default, *others)` or `bounded(default, low,
high)`. Constructing it, from a TOML file or in code, checks every field's type (a list becomes
a tuple, an int a float where a float is wanted), its allowed values and its range, refuses NaN
and infinities in any float, then runs the class's own cross-field `check()`. Every failure is a
TfrecError with one sentence naming the key.
"""

import dataclasses
import functools
import math
import os
import types
import typing
from pathlib import Path

from tfrec.errors import TfrecError


def choice(default, *others):
    """A field whose value must be `default` or one of `others`."""
    return dataclasses.field(default=default, metadata={"choices": (default, *others)})


def bounded(default, low=None, high=None, *, below=None):
    """A number (or each number of a tuple) in [low, high], or [low, below) with `below`."""
    return dataclasses.field(default=default, metadata={"range": (low, high, below)})


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          Path: "a path"}


class Validated:
    """Mixin of the config dataclasses: validates the fields after `__init__`."""

    SECTION: typing.ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__post_init__" in cls.__dict__:  # it would silently replace the field checks
            raise TypeError(f"{cls.__name__}: put cross-field rules in check(), not "
                            "__post_init__")

    @classmethod
    def key(cls, name: str) -> str:
        """How messages name field `name` (e.g. "config key train.seed")."""
        return f"config key {cls.SECTION}.{name}"

    def __post_init__(self):
        check_fields(self)
        self.check()

    def check(self) -> None:
        """Cross-field rules of a section (each field alone is already checked)."""

    @classmethod
    def from_mapping(cls, values):
        """The config of a mapping of keys (a TOML table); refuses keys it does not know."""
        if not isinstance(values, dict):
            raise TfrecError(f"config section [{cls.SECTION}] must be a table of keys, not "
                             f"{values!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                raise TfrecError(f"unknown config key {cls.SECTION}.{key} (known in "
                                 f"[{cls.SECTION}]: {', '.join(known)})")
        return cls(**values)


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def check_fields(config) -> None:
    """Checks (and normalises in place) every field of the dataclass instance `config`."""
    cls = type(config)
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        key = cls.key(field.name)
        value = _coerce(key, getattr(config, field.name), hints[field.name])
        object.__setattr__(config, field.name, value)  # frozen dataclasses too
        meta = field.metadata
        if "choices" in meta and value not in meta["choices"]:
            raise TfrecError(f"{key} is {value!r}, but it must be one of "
                             f"{', '.join(map(str, meta['choices']))}")
        numbers = value if isinstance(value, tuple) else (value,)
        it = "each number" if numbers is value else "it"
        for v in numbers:
            if isinstance(v, float) and not math.isfinite(v):
                raise TfrecError(f"{key} is {_show(value)}, but {it} must be a finite number")
            if "range" in meta and v is not None and not _in_range(v, *meta["range"]):
                raise TfrecError(f"{key} is {_show(value)}, but {it} must be "
                                 f"{_bounds(*meta['range'])}")


def _coerce(key: str, value, hint):
    """`value` in the type `hint` (int -> float, list -> tuple); TfrecError if it is not one."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TfrecError(f"{key} must be a list, not {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(key, v, args[0]) for v in value)
        if len(value) != len(args):
            raise TfrecError(f"{key} is {_show(value)}, but it must be a list of {len(args)}")
        return tuple(_coerce(key, v, a) for v, a in zip(value, args))
    if origin is typing.Union or isinstance(hint, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        if type(value) in args:  # e.g. logq: bool | str takes true, false or "auto"
            return value
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # e.g. negatives = 256
    if hint is Path and isinstance(value, (str, os.PathLike)):
        return Path(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise TfrecError(f"{key} must be {_NAMES.get(hint, hint.__name__)}, not {value!r}")
    return value


def _in_range(v, low, high, below) -> bool:
    return ((low is None or v >= low) and (high is None or v <= high)
            and (below is None or v < below))


def _bounds(low, high, below) -> str:
    if below is not None:
        return f"at least {low} and below {below}"
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"between {low} and {high}"


def _show(value) -> str:
    """A value as the config file writes it: lists in brackets, NaN as nan."""
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)
