"""YAML configs: one per runnable experiment. A name without a path finds a packaged config."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import yaml

PACKAGED = Path(__file__).resolve().parent / "configs"
SOURCE_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the field."""


def resolve_config_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.exists():
        return path
    for folder in (SOURCE_CONFIGS, PACKAGED):
        for candidate in (folder / path, folder / f"{path}.yaml"):
            if candidate.exists():
                return candidate
    raise ConfigError(f"config {str(name_or_path)!r} not found (neither a file nor a packaged config name)")


def load_config(name_or_path: str | Path) -> dict:
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text ({err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of fields, got {type(data).__name__}")
    data["_path"] = str(path)
    return data


def dataclass_from(cls, values: dict | None, where: str):
    """Build dataclass ``cls`` from ``values``, naming any unknown or mistyped field."""
    values = dict(values or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(names)}")
    for key, value in values.items():
        default = names[key].default
        if default is not dataclasses.MISSING and default is not None and value is not None:
            expected = type(default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                values[key] = float(value)
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{where}: field {key!r} must be {expected.__name__}, got {value!r}")
    return cls(**values)


def import_object(spec: str) -> Any:
    """``package.module:Name`` -> the object."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ConfigError(f"import path {spec!r} must look like 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"cannot import module {module_name!r} from {spec!r}: {err}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None
