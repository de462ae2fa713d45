"""Settings as frozen dataclasses, validated when built: each field checked against its type, then
the class's own checks; each field defined once (`option`) for the Python API and the command line."""

from __future__ import annotations

import dataclasses
import numbers
import os

from catdog.errors import CatdogError

REQUIRED = dataclasses.MISSING


def option(default=REQUIRED, help: str = "", *, positional: str = "", choices: tuple | None = None,
           metavar: str | None = None, flag: "str | bool | None" = None, parse: str | None = None):
    """A setting, defined once for the Python API and the command line: its default and help, and how
    its flag reads (`catdog.commands.arguments.add_options`). `positional`: the help of a required
    argument; `flag`: another flag name, or False for none."""
    metadata = {"help": positional or help, "positional": bool(positional), "choices": choices, "metavar": metavar,
                "flag": flag, "parse": parse}
    return dataclasses.field(default=default, metadata=metadata)


class Settings:
    """Every field is checked against its annotation before the class's own checks (`_validate`):
    a wrong type from the Python API or a hand-edited head.json is one line, not a TypeError deep
    inside a job."""

    def __post_init__(self) -> None:
        check_types(self)
        self._validate()

    def _validate(self) -> None:
        pass

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


_TYPES = {"int": (numbers.Integral,), "float": (numbers.Real,), "str": (str,), "bool": (bool,)}  # numpy's numbers too
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def check_types(config) -> None:
    """Each field's value is of its annotated type (`int`, `float`, `str`, `bool`, `X | None`,
    `tuple[str, ...]`); bools are not integers here, integers are numbers."""
    for field in dataclasses.fields(config):
        value, kinds = getattr(config, field.name), [k.strip() for k in str(field.type).split("|")]
        if "str" in kinds and hasattr(value, "__fspath__"):  # a pathlib.Path for a path: its string
            value = os.fspath(value)
            object.__setattr__(config, field.name, value)
        if value is None and "None" in kinds:
            continue
        if "tuple[str, ...]" in kinds and isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
            continue
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
            continue
        words = [_TYPE_WORDS.get(k, k.replace("tuple[str, ...]", "a list of strings")) for k in kinds if k != "None"]
        expected = " or ".join(words) + (" or None" if "None" in kinds else "")
        raise CatdogError(f"{field.name} must be {expected}, got {value!r} ({type(value).__name__})")


def same_as(cls, name: str, **metadata):
    """Another config class's setting, where a command takes it too: its default, help and flag come
    from the one definition (`metadata` changes some, e.g. flag=None to give it its own flag)."""
    field = cls.__dataclass_fields__[name]
    return dataclasses.field(default=field.default, metadata={**field.metadata, **metadata})


def flag(name: str) -> str:
    return name.replace("_", "-")


def choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CatdogError(f"--{flag(name)} must be one of {', '.join(allowed)}; got {value!r}")


def positive(config, name: str) -> None:
    if getattr(config, name) <= 0:
        raise CatdogError(f"--{flag(name)} must be positive, got {getattr(config, name)}")
