"""docs/api.md: its complete example runs as written (extracted and run in a fresh interpreter),
and every name its table lists is exported from the package."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pgf_sim

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_listed_name_is_exported_and_public():
    listed = set(re.findall(r"^\| `(\w+)", DOC.read_text(encoding="utf-8"), flags=re.M))
    listed |= {n for row in re.findall(r"^\| (`.*?) \|", DOC.read_text(encoding="utf-8"), flags=re.M)
               for n in re.findall(r"`(\w+)[`(]", row)}
    assert {"sparsify", "simulate", "capture", "load_table", "to_semi_structured"} <= listed
    for name in listed:
        assert name in pgf_sim.__all__, f"{name} is in docs/api.md but not in pgf_sim.__all__"
        assert not name.startswith("_")
        assert getattr(pgf_sim, name) is not None
    with pytest.raises(AttributeError):
        pgf_sim.definitely_not_public  # noqa: B018


def test_importing_the_package_loads_no_torch():
    code = "import sys, pgf_sim; pgf_sim.simulate; pgf_sim.load_hardware; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow  # trains a small MLP and a 4-run sweep: about a minute on 2 busy cores
def test_the_api_example_runs(tmp_path):
    (block,) = _python_blocks()
    script = tmp_path / "example.py"
    script.write_text(block)
    env = dict(os.environ, PYTHONPATH=str(DOC.parents[1]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"validation accuracy 0\.(8[5-9]|9\d)", out)
    assert "a100_80gb:" in out and "flex_nm_systolic:" in out
    assert "on the front:" in out and "On flex_nm_systolic: train " in out
    assert "the model is on cpu" in out
