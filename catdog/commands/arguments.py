"""What the command modules share: a config class's settings as flags (each defined once, in
`catdog.config`, for the API and the command line alike), the settings back from parsed flags, and
sizes like 2G."""

from __future__ import annotations

import argparse
import dataclasses

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(text: str) -> int:
    number, unit = text.upper().rstrip("IB"), ""
    if number and number[-1] in UNITS:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)") from None


def options(cls, args: argparse.Namespace, *skip: str) -> dict:
    """The fields of config class `cls` that have a flag, as keyword arguments for an API function."""
    return {n: getattr(args, n) for n in cls.__dataclass_fields__ if hasattr(args, n) and n not in skip}


def add_options(p: argparse.ArgumentParser, cls, *skip: str) -> None:
    """A flag for each setting of config class `cls` (not in `skip`): its name, type, default, choices
    and help from the field itself. A required setting is a positional argument, or a required flag
    where the field names one."""
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if field.name in skip or not meta or meta.get("flag") is False:
            continue
        name = meta.get("flag") or "--" + field.name.replace("_", "-")
        kinds = [k.strip() for k in str(field.type).split("|") if k.strip() != "None"]
        extra = {"choices": meta["choices"]} if meta.get("choices") else {}
        if meta.get("metavar"):
            extra["metavar"] = meta["metavar"]
        if meta.get("positional"):
            if meta.get("flag"):
                p.add_argument(name, dest=field.name, required=True, help=meta["help"], **extra)
            else:
                p.add_argument(field.name, help=meta["help"], **extra)
            continue
        default = field.default
        if kinds == ["bool"]:
            if default:
                p.add_argument("--no-" + field.name.replace("_", "-"), dest=field.name, action="store_false",
                               help=f"not: {meta['help']}")
            else:
                p.add_argument(name, dest=field.name, action="store_true", help=meta["help"])
            continue
        parse = {"int": int, "float": float, "str": str, "tuple[str, ...]": _names}[kinds[0]]
        if meta.get("parse") == "bytes":
            parse = parse_bytes
        said = default is None or default == () or "default" in meta["help"]
        shown = "" if said else f" (default: {_shown(default, meta)})"
        p.add_argument(name, dest=field.name, type=parse, default=default, help=meta["help"] + shown, **extra)


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


def _shown(default, meta) -> str:
    if meta.get("parse") == "bytes":
        unit = next(u for u in ("T", "G", "M", "K", "") if default % UNITS[u] == 0)
        return f"{default // UNITS[unit]}{unit}"
    return str(default)
