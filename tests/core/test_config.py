from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from pgf_sim.core import NM, ConfigError, Registry, UnknownNameError, apply_overrides, from_dict, load_yaml


@dataclass(frozen=True)
class Inner:
    rate_hz: float
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    patterns: tuple[NM, ...] = ()
    limit: Optional[int] = None
    tags: dict[str, int] = field(default_factory=dict)


def test_from_dict_builds_nested():
    cfg = from_dict(Outer, {"name": "x", "inner": {"rate_hz": "1e9"}, "patterns": ["2:4", "1:8"]}, source="f.yaml")
    assert cfg.inner.rate_hz == 1e9 and cfg.patterns == (NM(2, 4), NM(1, 8)) and cfg.limit is None


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, {"name": "x", "inner": {"rate_hz": 1, "rat": 2}}, source="hw/a.yaml")
    msg = str(e.value)
    assert "hw/a.yaml" in msg and "'rat'" in msg and "rate_hz" in msg and "mode" in msg


def test_missing_and_bad_values_name_field():
    with pytest.raises(ConfigError, match=r"f.yaml: field 'Outer.inner' is missing"):
        from_dict(Outer, {"name": "x"}, source="f.yaml")
    with pytest.raises(ConfigError, match=r"Outer.inner.mode.*'c'.*'a', 'b'"):
        from_dict(Outer, {"name": "x", "inner": {"rate_hz": 1, "mode": "c"}}, source="f.yaml")
    with pytest.raises(ConfigError, match=r"Outer.patterns\[0\]"):
        from_dict(Outer, {"name": "x", "inner": {"rate_hz": 1}, "patterns": ["5:4"]}, source="f.yaml")
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"name": "x", "inner": {"rate_hz": 1}, "limit": "many"}, source="f.yaml")


def test_load_yaml_errors_name_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_yaml(p)
    p.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="bad.yaml"):  # safe_load refuses to construct it
        load_yaml(p)


def test_overrides():
    out = apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]", "d.e=x", "p=1:8"])
    assert out == {"a": {"b": 2, "c": [1, 2]}, "d": {"e": "x"}, "p": "1:8"}


def test_unquoted_pattern_in_yaml_gets_a_hint(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("name: x\ninner: {rate_hz: 1}\npatterns: [1:8]\n")
    with pytest.raises(ConfigError, match=r"patterns\[0\].*68.*quote"):
        from_dict(Outer, load_yaml(p), source=str(p))


def test_registry():
    r = Registry("recipe")
    r.register("x")(1)
    with pytest.raises(ValueError):
        r.add("x", 2)
    with pytest.raises(UnknownNameError, match="valid: x"):
        r.get("y")
