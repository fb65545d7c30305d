"""One strict loader from YAML mappings to frozen dataclasses.

Unknown key: error listing the valid keys. Missing key: error naming it. Bad value: error
naming the file, the field and the value (and the valid values for a ``Literal``). Only
``yaml.safe_load`` is ever used; nothing from a config file is executed.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from .errors import ConfigError
from .pattern import NM

T = TypeVar("T")
_NM_TEXT = re.compile(r"^\s*\d+\s*:\s*\d+\s*$")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file."""
    from .files import FileReadError, read_limited

    path = Path(path)
    try:
        text = read_limited(path, "a YAML file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text YAML file (byte {exc.start} is not UTF-8)") from None
    except FileReadError as exc:
        raise ConfigError(str(exc)) from None
    data = safe_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


class DuplicateKeyError(yaml.YAMLError):
    pass


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (the loader of ``yaml.safe_load``: plain data only) that refuses a
    key given twice in one mapping: YAML keeps the last one silently, so a pasted second
    ``dram_bw_bytes_per_s`` would replace the first without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(f"line {line}: key {str(key)[:80]!r} is given twice (first on line "
                                            f"{seen[key]}); remove one")
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
        return super().construct_mapping(node, deep=deep)


def safe_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` of ``text`` without anchors and aliases (``&a`` / ``*a``).

    Aliases let a few hundred bytes expand into gigabytes (an "alias bomb"); project files
    never need them, so they are refused before anything is built. Errors name ``source``.
    """
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                line = event.start_mark.line + 1
                raise ConfigError(f"{source}: line {line}: YAML anchors and aliases (&name / *name) are not "
                                  "accepted; write the values out")
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - yaml.SafeLoader, plus duplicate keys refused
    except DuplicateKeyError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"{source}: not valid YAML: {first}") from None


def from_dict(cls: type[T], data: Any, *, source: str = "<config>", field_path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, strictly. ``source`` names the file in errors."""
    return _convert(cls, data, source, field_path or cls.__name__)


def to_dict(obj: Any) -> Any:
    """Inverse of ``from_dict``: plain YAML/JSON-ready values (patterns as ``"N:M"``)."""
    if isinstance(obj, NM):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # OMIT_AT_DEFAULT: fields added after results were stored, left out while at their default
        # so that stored configs (and the run ids hashed from them) stay what they were
        omit = getattr(type(obj), "OMIT_AT_DEFAULT", ())
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.name in omit and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str], *, source: str = "<cli>") -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML scalar/list) to a nested mapping copy."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        # YAML 1.1 reads an unquoted 1:8 as the base-60 integer 68; a bare N:M stays a string.
        value = raw.strip() if _NM_TEXT.match(raw) else (safe_yaml(raw, f"{source}: override {item!r}") if raw else "")
        _set_path(out, key, value, source)
    return out


def set_values(data: dict[str, Any], values: dict[str, Any], *, source: str = "<config>") -> dict[str, Any]:
    """Set already-parsed ``values`` at dotted keys (``schedule.steps``) of a nested mapping copy."""
    import copy

    out = copy.deepcopy(data)
    for key, value in values.items():
        _set_path(out, key, copy.deepcopy(value), source)
    return out


def _set_path(out: dict[str, Any], key: str, value: Any, source: str) -> None:
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if len(errors) == 1 else f"{source}: field '{path}': value {value!r} fits none of {', '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value not in args:
            valid = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: field '{path}': invalid value {value!r}; valid values: {valid}")
        return value
    if tp is NM:
        try:
            return NM.parse(value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: field '{path}': {exc}") from None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: field '{path}': expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: field '{path}': unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(fields)}"
            )
        kwargs = {}
        for name, f in fields.items():
            sub = f"{path}.{name}" if path else name
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], source, sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: field '{sub}' is missing (required, type {_type_name(hints[name])})")
        try:
            return tp(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: field '{path}': {exc}") from None
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: field '{path}': expected a list, got {value!r}")
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{source}: field '{path}': expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, source, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: field '{path}': expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_convert(kt, k, source, path): _convert(vt, v, source, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: field '{path}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{source}: field '{path}': expected an integer, got {value!r}")
        return value  # ranges are each field's own (a seed's differs from a step count's)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: field '{path}': expected a number, got {value!r}")
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: field '{path}': expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{source}: field '{path}': {str(value)[:40]} is not a finite number")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: field '{path}': expected a string, got {value!r}")
        return value
    raise TypeError(f"config loader does not handle type {tp!r} at {path}")
