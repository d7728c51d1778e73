"""Find, load and validate firmware profiles by name (`eastron/sdm120`) along a search path.

The search path is `/etc/edgegw/profiles` (local profiles, so a technician can add or fix one on a
box) followed by the `firmware_profiles` package shipped with the gateway (package data, so a wheel
or the Debian package carries it); the first directory holding a name wins. Problems are raised as one `ConfigError` listing every `<key.path>: …` line.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.configbase import format_validation_error, read_toml
from gateway.errors import ConfigError
from gateway.profiles.schema import (
    Command,
    Interface,
    Point,
    Profile,
    command_problems,
    point_problems,
    profile_problems,
)

__all__ = [
    "DEFAULT_SEARCH_PATH",
    "SHIPPED_DIR",
    "SYSTEM_DIR",
    "ProfileNotFound",
    "ProfileRef",
    "check_name",
    "find_profiles",
    "load_profile",
    "load_profile_file",
    "parse_profile",
    "resolve",
]


def _shipped_dir() -> Path:
    """The `firmware_profiles` package's directory: in the wheel (and the Debian package) or the source tree."""
    try:
        root = importlib.resources.files("firmware_profiles")
    except ModuleNotFoundError:  # an editable install made before the package existed: the checkout's copy
        return Path(__file__).resolve().parents[2] / "firmware_profiles"
    # wheels install unpacked, so this is a real directory the search path and `edgegw profile` can list
    return Path(str(root))


SHIPPED_DIR = _shipped_dir()
SYSTEM_DIR = Path("/etc/edgegw/profiles")
DEFAULT_SEARCH_PATH: tuple[Path, ...] = (SYSTEM_DIR, SHIPPED_DIR)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*/[a-z0-9][a-z0-9_.-]*$")


_M = TypeVar("_M", bound=BaseModel)


class ProfileNotFound(ConfigError):
    code = "profile_not_found"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileRef:
    """A profile file found on the search path: `name` is `<vendor dir>/<file stem>`."""

    name: str
    path: Path
    root: Path


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(
            "must be <vendor>/<model> in lower case a-z 0-9 _ - (the model may also hold .), e.g. eastron/sdm120"
        )
    return name


def find_profiles(search_path: Sequence[Path] = DEFAULT_SEARCH_PATH) -> list[ProfileRef]:
    """Every profile on the search path, sorted by name; a name found twice keeps its first directory."""
    found: dict[str, ProfileRef] = {}
    for root in search_path:
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*/*.toml")):
            name = f"{path.parent.name}/{path.stem}"
            if _NAME_RE.match(name) and name not in found:
                found[name] = ProfileRef(name=name, path=path, root=root)
    return [found[k] for k in sorted(found)]


def resolve(name: str, search_path: Sequence[Path] = DEFAULT_SEARCH_PATH) -> Path:
    """The file of a profile name; raises ProfileNotFound naming the directories searched."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ProfileNotFound([f'profile name {exc.args[0]}, got "{name}"'], name) from None
    for root in search_path:
        path = root / f"{name}.toml"
        if path.is_file():
            return path
    where = ", ".join(str(r) for r in search_path)
    raise ProfileNotFound(
        [f'no such profile, got "{name}"; searched {where}; `edgegw profile list` shows the known names'], name
    )


def load_profile(name: str, search_path: Sequence[Path] = DEFAULT_SEARCH_PATH) -> Profile:
    """Load a profile by name (`eastron/sdm120`); raises ConfigError listing every problem."""
    return load_profile_file(resolve(name, search_path))


def load_profile_file(path: str | Path) -> Profile:
    """Load and validate one profile file; raises ConfigError whose `source` is the file."""
    path = Path(path)
    doc = read_toml(path)
    return parse_profile(doc, str(path))


def parse_profile(doc: dict[str, Any], source: str = "") -> Profile:
    """Validate a parsed TOML profile; raises ConfigError listing every problem found in one pass."""
    errors: list[str] = []
    head = {k: v for k, v in doc.items() if k not in ("points", "commands")}
    try:
        # everything but the lists, which are checked item by item below so one run shows every problem
        Profile.model_validate({**head, "points": ()})
    except ValidationError as exc:
        errors.extend(format_validation_error(exc, Profile))
    try:
        interface: Interface | None = Interface.model_validate(doc.get("interface", {}))
    except ValidationError:
        interface = None  # already reported above
    points = _items(_tables(doc, "points", errors), Point, "points", errors)
    commands = _items(_tables(doc, "commands", errors), Command, "commands", errors)
    for i, p in points:
        errors.extend(point_problems(p, f"points[{i}]", interface))
    for i, c in commands:
        errors.extend(command_problems(c, f"commands[{i}]"))
    errors.extend(profile_problems(points, commands))
    if errors:
        raise ConfigError(sorted(errors, key=_item_order), source)
    return Profile.model_validate(doc)


_ITEM_RE = re.compile(r"^(points|commands)\[(\d+)\]")


def _item_order(line: str) -> tuple[int, int]:
    """Top-level lines first, then each point's and each command's lines together, in file order."""
    m = _ITEM_RE.match(line)
    if m is None:
        return (0, 0)
    return (1 if m.group(1) == "points" else 2, int(m.group(2)))


def _tables(doc: dict[str, Any], key: str, errors: list[str]) -> list[tuple[int, dict[str, Any]]]:
    raw = doc.get(key, [] if key == "commands" else None)
    if raw is None:
        errors.append(f"{key}: required key is missing; add at least one [[{key}]] table")
        return []
    if not isinstance(raw, list):
        errors.append(f"{key}: must be a list of tables written as [[{key}]], got {type(raw).__name__}")
        return []
    if key == "points" and not raw:
        errors.append("points: at least one [[points]] table is needed, got none")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, dict):
            out.append((i, item))
        else:
            errors.append(f"{key}[{i}]: must be a table, got {item!r}")
    return out


def _items(
    raw: Iterable[tuple[int, dict[str, Any]]], model: type[_M], key: str, errors: list[str]
) -> list[tuple[int, _M]]:
    out: list[tuple[int, _M]] = []
    for i, item in raw:
        try:
            out.append((i, model.model_validate(item)))
        except ValidationError as exc:
            errors.extend(format_validation_error(exc, model, f"{key}[{i}]"))
    return out
