"""Load firmware profiles by name (packaged YAML) or from a file path."""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from firmware_profiles.schema import FirmwareProfile, ProfileProblems

_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SUFFIXES = (".yaml", ".yml")


class ProfileError(Exception):
    """A firmware profile is unknown, unreadable or invalid; the message says which and why."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _profiles_dir() -> Traversable:
    return resources.files("firmware_profiles") / "profiles"


def available_profiles() -> list[str]:
    """Names of the profiles shipped with the package, sorted."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _profiles_dir().iterdir()
        if entry.is_file() and entry.name.endswith(".yaml")
    )


def _looks_like_path(name_or_path: str) -> bool:
    return "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(_SUFFIXES)


def load_profile(name_or_path: str) -> FirmwareProfile:
    """Load a packaged profile by bare name, or a profile file by path; raise ProfileError."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(f"firmware profile file '{name_or_path}' does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(
                f"firmware profile file '{name_or_path}' is unreadable: {exc}"
            ) from None
        return parse_profile(text, label=name_or_path)
    if not _PROFILE_NAME.match(name_or_path) or name_or_path not in available_profiles():
        raise ProfileError(
            f"unknown firmware profile '{name_or_path}'; "
            f"available: {', '.join(available_profiles())}"
        )
    text = (_profiles_dir() / f"{name_or_path}.yaml").read_text(encoding="utf-8")
    profile = parse_profile(text, label=name_or_path)
    if profile.name != name_or_path:
        raise ProfileError(
            f"firmware profile '{name_or_path}': name: '{profile.name}' does not match "
            f"the file name '{name_or_path}.yaml'"
        )
    return profile


def parse_profile(text: str, *, label: str) -> FirmwareProfile:
    """Parse and validate profile YAML text; label names the profile in error messages."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        raise ProfileError(f"firmware profile '{label}': {_describe_yaml_error(exc)}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"firmware profile '{label}': YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"firmware profile '{label}': must be a YAML mapping of fields")
    try:
        return FirmwareProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"firmware profile '{label}': {_describe_validation(exc)}") from None


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if mark is None:
        return f"YAML syntax error: {problem}"
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _describe_validation(exc: ValidationError) -> str:
    parts: list[str] = []
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ProfileProblems):
            parts.extend(f"{field}: {message}" for field, message in cause.problems)
            continue
        field = ".".join(str(part) for part in error["loc"]) or "(profile)"
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)
