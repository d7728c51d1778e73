"""Arguments of control requests, checked with errors naming the key: `args.limit: must be ..., got ...`."""

from __future__ import annotations

from typing import Any

from gateway.control.protocol import BAD_ARGS, ControlError

_REQUIRED: Any = object()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def text(args: dict[str, Any], name: str, default: Any = _REQUIRED) -> str:
    value = args.get(name, default)
    if value is _REQUIRED:
        raise ControlError(BAD_ARGS, f"args.{name}: required, got nothing")
    if not isinstance(value, str):
        raise ControlError(BAD_ARGS, f"args.{name}: must be a string, got {_type_name(value)}")
    return value


def optional_text(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    return None if value is None else text(args, name)


def integer(args: dict[str, Any], name: str, default: Any = _REQUIRED, *, lo: int = 0, hi: int = 2**62) -> int:
    value = args.get(name, default)
    if value is _REQUIRED:
        raise ControlError(BAD_ARGS, f"args.{name}: required, got nothing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError(BAD_ARGS, f"args.{name}: must be an integer, got {_type_name(value)}")
    if not lo <= value <= hi:
        raise ControlError(BAD_ARGS, f"args.{name}: must be {lo}..{hi}, got {value}")
    return value


def integers(args: dict[str, Any], name: str) -> list[int]:
    value = args.get(name)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ControlError(BAD_ARGS, f"args.{name}: must be a list of integers, got {_type_name(value)}")
    return list(value)


def mapping(args: dict[str, Any], name: str) -> dict[str, Any]:
    value = args.get(name, {})
    if not isinstance(value, dict):
        raise ControlError(BAD_ARGS, f"args.{name}: must be an object, got {_type_name(value)}")
    return value
