"""YAML configs: one per runnable experiment, each checked against a typed schema.

One loader for every config kind: :func:`load_config` reads the YAML (a path, or the name of a packaged
config), :func:`apply_overrides` folds in ``--set KEY=VALUE`` options and :func:`validate` checks the
result against a :class:`Schema` (a pydantic model). Unknown keys, at any depth, are errors naming the
key and the allowed ones; values are type- and range-checked; every error names the file (or the
``--set`` option) and the field::

    configs/x.yaml: ppo.bogus_key: unknown key; allowed: world, reward, ...

:func:`parse_key_values` is the one parser of ``KEY=VALUE`` command-line options.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

PACKAGED = Path(__file__).resolve().parent / "configs"
SOURCE_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OVERRIDES_KEY = "_overrides"  # config key holding {dotted key: the option that set it}, so errors blame the option


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the field."""


class UnknownNameError(ConfigError):
    """A name that is not one of the valid ones (a world, a world argument, a questioner, a reward, a config key).

    The message is one line: the name, the valid names, and the closest valid name when one is close.

    Attributes:
        kind: what the name names, e.g. ``"world"`` or ``"argument of world 'shapes'"``.
        name: the name given.
        valid: the valid names.
        suggestion: the closest valid name, or None.
    """

    def __init__(self, kind: str, name: str | None = None, valid: Iterable[str] | None = None, where: str = "",
                 note: str = ""):
        if valid is None:  # a message alone: what gymnasium.make's ``type(err)(message)`` re-raise passes
            self.kind, self.name, self.valid, self.suggestion = None, None, [], None
            super().__init__(kind)
            return
        self.kind, self.name, self.valid = kind, name, list(valid)
        self.suggestion = closest(name, self.valid)
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        prefix = f"{where}: " if where else ""
        note = f" {note}" if note else ""
        super().__init__(f"{prefix}unknown {kind} {name!r}; valid: {', '.join(self.valid)}{note}{hint}")

    def __str__(self) -> str:  # KeyError subclasses would otherwise print the message in quotes
        return str(self.args[0])


class UnknownArgumentError(UnknownNameError, TypeError):
    """An unknown keyword argument; a TypeError too, as Python raises for a call with a wrong keyword."""


class UnknownWorldError(UnknownNameError, KeyError):
    """An unregistered world name; a KeyError too, as a lookup in the registry."""


def check_name(kind: str, name: Any, valid: Sequence[str], where: str = "", note: str = "") -> Any:
    """``name`` if it is one of ``valid``; else an :class:`UnknownNameError` listing them (and ``note``)."""
    if name not in valid:
        raise UnknownNameError(kind, name, valid, where, note)
    return name


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (difflib's ratio of at least 0.6), or None."""
    matches = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return matches[0] if matches else None


# --- KEY=VALUE options ------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line value read as YAML.

    ``3`` is an int, ``0.5`` a float, ``true`` a bool, ``null`` None, ``[1, 2]`` a list, anything else the string itself.
    """
    return yaml.safe_load(text) if text.strip() else ""


def parse_key_values(items: Sequence[str] | None, option: str = "--set") -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``, each value read by :func:`parse_value`.

    Args:
        items: the option's values, as argparse collects them with ``action="append"``.
        option: the option's name, for error messages.

    Returns:
        The keys and values, in order (a repeated key keeps its last value).

    Raises:
        ConfigError: an item without ``=`` or with an empty key, or a value that is not valid YAML; the
            message names the item.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{option} {item!r}: must look like KEY=VALUE")
        try:
            out[key] = parse_value(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{option} {item!r}: the value is not valid YAML ({problem})") from None
    return out


def apply_overrides(config: dict, overrides: dict[str, Any], option: str = "--set") -> dict:
    """Fold ``overrides`` into ``config`` (in place): a dotted key ``train.steps`` sets a nested field.

    Each overridden key is remembered, so that :func:`validate` blames the option, not the file, for a
    bad key or value.
    """
    origins = config.setdefault(OVERRIDES_KEY, {})
    for key, value in overrides.items():
        parts = key.split(".")
        node = config
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{option} {key}={value!r}: {'.'.join(parts[: depth + 1])} is not a section")
            node = child
        node[parts[-1]] = value
        origins[key] = f"{option} {key}={value!r}"
    return config


# --- files --------------------------------------------------------------------------------------------


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file: ``name_or_path`` itself, or a packaged config of that name (``shapes_demo``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    for folder in (SOURCE_CONFIGS, PACKAGED):
        for candidate in (folder / path, folder / f"{path}.yaml"):
            if candidate.exists():
                return candidate
    raise ConfigError(f"config {str(name_or_path)!r} not found (neither a file nor a packaged config name)")


def load_config(name_or_path: str | Path) -> dict:
    """The config's fields as a dict, with ``_path`` set to the file it came from (checked by :func:`validate`)."""
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


# --- schemas -------------------------------------------------------------------------------------------


class Schema(BaseModel):
    """Base of every config schema: unknown keys are errors (naming the allowed ones), fields are typed.

    Subclasses declare each field with ``Field(default, description=..., ge=..., ...)``; the description is
    what ``--help`` and the docs print.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, values: Any) -> Any:
        if isinstance(values, dict):
            allowed = list(cls.model_fields)
            for key in values:
                if key not in cls.model_fields:
                    suggestion = closest(str(key), allowed)
                    raise PydanticCustomError(
                        "unknown_key", "unknown key; allowed: {allowed}{hint}",
                        {"key": str(key), "allowed": ", ".join(allowed),
                         "hint": f"; did you mean {suggestion!r}?" if suggestion else ""},
                    )
        return values


def schema_help(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per field, nested sections flattened: ``name (default 3): description``, ``name (required): ...``."""
    lines = []
    for name, field in schema.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.extend(schema_help(annotation, f"{prefix}{name}."))
            continue
        item = get_args(annotation)[0] if get_origin(annotation) is list and get_args(annotation) else None
        if isinstance(item, type) and issubclass(item, BaseModel):  # a list of sections: describe one item
            lines.append(f"{prefix}{name}: {field.description or ''}; each item:")
            lines.extend(schema_help(item, f"{prefix}{name}[]."))
            continue
        state = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        lines.append(f"{prefix}{name} ({state}): {field.description or ''}")
    return lines


M = TypeVar("M", bound=BaseModel)


def _location(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: dict, where: str, origins: dict[str, str]) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "unknown_key":
        loc = loc + (error["ctx"]["key"],)
    field = _location(loc)
    # An option that set this field, a section around it, or a key inside it is what to blame.
    named_keys = [k for k in origins if field == k or field.startswith((k + ".", k + "[")) or k.startswith(field + ".")]
    source = origins[named_keys[0]] if named_keys else where
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] not in ("unknown_key", "missing", "value_error") and "input" in error:
        message += f" (got {error['input']!r})"
    return f"{source}: {field}: {message}" if field else f"{source}: {message}"


def validate(schema: type[M], values: dict | None, where: str | None = None) -> M:
    """Check ``values`` against ``schema`` and build it.

    Args:
        schema: a :class:`Schema` subclass.
        values: the config's fields; keys starting with ``_`` (``_path``, ``_overrides``) are bookkeeping
            and skipped.
        where: what to name in errors (default: ``values["_path"]``, else "config").

    Returns:
        The validated config.

    Raises:
        ConfigError: one line per problem, each naming the file (or the ``--set`` option) and the field.
    """
    values = dict(values or {})
    where = where or str(values.get("_path", "config"))
    origins = values.get(OVERRIDES_KEY) or {}
    try:
        return schema.model_validate({k: v for k, v in values.items() if not str(k).startswith("_")})
    except ValidationError as err:
        raise ConfigError("\n".join(_describe(e, where, origins) for e in err.errors())) from None


def import_object(spec: str) -> Any:
    """``package.module:Name`` (or ``package.module:Class.attr``) -> the object.

    Raises:
        ConfigError: ``spec`` is not an import path, the module does not import, or it lacks the name.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"import path {spec!r} must look like 'package.module:Name'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"cannot import module {module_name!r} from {spec!r}: {err}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None
    return obj
