"""The package's architecture, read from its imports (every ``import``, also inside functions).

Layers, lowest first; a part may import only the parts below it:

    core                        the N:M value, registries, strict config, errors
    sparsity                    torch-free recipe schedules, roles, per-step densities
    store                       the one owner of the SQLite result database
    sim      train              the simulator (no torch in its core); training (torch)
    codesign                    sweeps, Pareto/pick, reports: couples train and sim
    cli, __main__               the command line

Inside codesign, rooms (subpackages by job), lowest first; a room may import only the rooms
below it, and codesign's root holds nothing but ``__init__.py`` and the rooms:

    decide                      Pareto fronts, the pick and why, quality budgets, seed statistics
    run                         sweeps, executors, trained runs as workloads, the proxy cost
    explore                     hardware design-space exploration, mixed per-layer N:M
    report                      the HTML report and its figures
    query                       the result store read for the commands (views.py)
    cli                         codesign's subcommands

``pgf_sim/__init__.py`` re-exports from core only. Imports are resolved from the AST, so a
lazy import inside a function counts as much as one at the top of a module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pgf_sim"

# part -> the parts it may import (besides itself)
ALLOWED = {
    "core": set(),
    "sparsity": {"core"},
    "store": {"core"},
    "sim": {"core", "sparsity"},
    "train": {"core", "sparsity", "store"},
    "codesign": {"core", "sparsity", "store", "sim", "train"},
    "__init__": {"core"},
    "cli": {"core"},  # subcommand modules are found by name (importlib), not imported here
    "__main__": {"cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, at any depth of its AST; ``from X import Y``
    yields ``X`` and, when ``X.Y`` is a module of the package, ``X.Y`` too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]  # importlib.import_module("pgf_sim.train...") counts as an import
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                out.add(first.value)
    return out


def _is_dynamic_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}


def part(module: str) -> str:
    """``pgf_sim.sim.cost`` -> ``sim``; ``pgf_sim.store`` -> ``store``; ``pgf_sim`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_imports(name: str) -> set[str]:
    return {m for m in IMPORTS[name] if m == "pgf_sim" or m.startswith("pgf_sim.")}


def test_the_parser_sees_lazy_imports(tmp_path):
    # sanity of the reader itself: a function-level import is found, relative names resolve
    assert "pgf_sim.sim.capture" in IMPORTS["pgf_sim.codesign.run.trained"]
    assert "torch" in IMPORTS["pgf_sim.sim.capture"]  # imported inside capture()
    assert "pgf_sim.core.errors" in IMPORTS["pgf_sim.sim.cost"] or "pgf_sim.core" in IMPORTS["pgf_sim.sim.cost"]
    code = "import importlib\ndef f():\n    return importlib.import_module('pgf_sim.train.trainer')\n"
    probe = tmp_path / "probe.py"
    probe.write_text(code)
    assert "pgf_sim.train.trainer" in imports_of("pgf_sim.sim.probe", probe)


def test_every_part_is_known():
    assert {part(m) for m in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layering(name):
    mine = part(name)
    bad = sorted(m for m in package_imports(name) if part(m) != mine and part(m) not in ALLOWED[mine])
    assert not bad, f"{name} ({mine}) imports {bad}; {mine} may import only {sorted(ALLOWED[mine])}"


def test_sim_never_imports_train():
    bad = {n: sorted(m for m in package_imports(n) if part(m) == "train") for n in MODULES if part(n) == "sim"}
    assert not {n: b for n, b in bad.items() if b}


def test_only_the_store_imports_sqlite3():
    users = sorted(n for n, imps in IMPORTS.items() if any(m == "sqlite3" or m.startswith("sqlite3.") for m in imps))
    assert users == ["pgf_sim.store"]


def test_sparsity_core_imports_no_torch():
    users = sorted(n for n, imps in IMPORTS.items() if part(n) in ("core", "sparsity")
                   and any(m == "torch" or m.startswith("torch.") for m in imps))
    assert not users


def test_no_import_cycles():
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    for name in MODULES:
        for target in package_imports(name):
            # ``from pgf_sim.core import NM`` goes through the package's __init__, which is a
            # module of its own; a package importing its own submodules is not a cycle
            if target in MODULES and target != name and not name.startswith(target + "."):
                g.add_edge(name, target)
    cycles = sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)
    assert not cycles, f"import cycles: {cycles}"


def _training_calls(path: Path) -> list[str]:
    """Optimiser / LR-scheduler constructions and ``.backward()`` calls in ``path`` (by AST)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name == "backward" or name in ("AdamW", "Adam", "SGD", "LambdaLR", "CosineAnnealingLR"):
                out.append(f"{name} (line {node.lineno})")
    return out


def test_one_training_loop():
    # every training run (train(), the mixed fine-tune) steps through trainer.fit_steps
    others = {n: calls for n, p in MODULES.items() if n != "pgf_sim.train.trainer" and (calls := _training_calls(p))}
    assert not others, f"a training loop outside pgf_sim/train/trainer.py: {others}"
    assert _training_calls(MODULES["pgf_sim.train.trainer"])  # the reader finds the one that exists


# ---- codesign's rooms ---------------------------------------------------------------------

CODESIGN = PACKAGE / "codesign"
# lowest first: a room may import only the rooms before it in this tuple (docstring above)
ROOMS = ("decide", "run", "explore", "report", "query", "cli")
CODESIGN_MODULES = sorted(n for n in MODULES if n.startswith("pgf_sim.codesign."))


def room(module: str) -> str | None:
    """``pgf_sim.codesign.decide.pick`` -> ``decide``; None outside codesign's rooms."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["pgf_sim", "codesign"] else None


def room_violations(name: str, imports: set[str]) -> list[str]:
    """The modules of ``imports`` in a room above ``name``'s own room (or in no known room)."""
    mine = ROOMS.index(room(name))
    return sorted(m for m in imports if room(m) is not None
                  and (room(m) not in ROOMS or ROOMS.index(room(m)) > mine))


def test_codesign_root_holds_only_its_init_and_the_rooms():
    entries = {p.name for p in CODESIGN.iterdir() if p.name != "__pycache__"}
    stray = sorted(entries - {"__init__.py", *ROOMS})
    assert not stray, (f"pgf_sim/codesign/ holds {stray}: every file of codesign belongs in one of its rooms "
                       f"{list(ROOMS)} (a new room: add it to ROOMS in tests/test_architecture.py, in layer order)")
    missing = sorted(r for r in ROOMS if not (CODESIGN / r / "__init__.py").is_file())
    assert not missing, f"rooms without a package: {missing} (pgf_sim/codesign/<room>/__init__.py)"


@pytest.mark.parametrize("name", ["pgf_sim.codesign", *(f"pgf_sim.codesign.{r}" for r in ROOMS)])
def test_codesign_and_each_room_say_what_they_are_for_and_import_nothing(name):
    # the docstring is the room's sign on the door; no imports, so that importing one module of a
    # room loads only what that module imports (``pgf-sim --help`` stays free of torch and plotly)
    tree = ast.parse(MODULES[name].read_text())
    assert ast.get_docstring(tree), f"{MODULES[name]} needs a docstring saying what the room is for"
    assert len(tree.body) == 1, f"{MODULES[name]} holds code besides its docstring; put it in a module of the room"


def test_the_room_rule_reads_names():
    # sanity of the checker itself: up is refused, down and sideways are not
    assert room("pgf_sim.codesign.run.sweep") == "run" and room("pgf_sim.sim.cost") is None
    assert room_violations("pgf_sim.codesign.decide.pick", {"pgf_sim.codesign.report.report"}) == [
        "pgf_sim.codesign.report.report"]
    assert not room_violations("pgf_sim.codesign.report.report",
                               {"pgf_sim.codesign.decide.pick", "pgf_sim.codesign.report.report_png", "pgf_sim.core"})


@pytest.mark.parametrize("name", CODESIGN_MODULES)
def test_room_layering(name):
    assert room(name) in ROOMS, f"{name} is in no room of codesign; the rooms: {list(ROOMS)}"
    bad = room_violations(name, package_imports(name))
    below = ROOMS[: ROOMS.index(room(name))]
    may = f"only {', '.join(below)}" if below else "no other room"
    assert not bad, (f"{name} (room {room(name)}) imports {bad}, above it; codesign's rooms, lowest first: "
                     f"{' < '.join(ROOMS)}; {room(name)} may import {may}")


def test_codesign_commands_live_in_the_cli_room():
    # the command line of codesign in one place: argparse and the subcommand hook only in cli/,
    # and every codesign module the top-level parser loads is there
    outside = sorted(n for n in CODESIGN_MODULES if room(n) != "cli"
                     and ("argparse" in IMPORTS[n] or "def add_commands" in MODULES[n].read_text()))
    assert not outside, f"command-line code outside pgf_sim/codesign/cli/: {outside}"
    loaded = [m for m in _command_modules() if m.startswith("pgf_sim.codesign")]
    assert loaded and all(room(m) == "cli" and m in MODULES for m in loaded), loaded


def _command_modules() -> tuple[str, ...]:
    """``_COMMAND_MODULES`` of ``pgf_sim/cli.py``, read from its AST (the modules it loads by name)."""
    for node in ast.parse(MODULES["pgf_sim.cli"].read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_COMMAND_MODULES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("pgf_sim/cli.py has no _COMMAND_MODULES")
