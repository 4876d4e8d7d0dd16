"""The library's import graph: `dap_model`'s packages form layers (no two import each other,
directly or around a loop), and `dap_model` never imports Dagster."""

from __future__ import annotations

import ast
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dap_model"


def unit_of(module: str) -> str:
    """`dap_model.training.stages` -> `training`; `dap_model.layout` -> `layout`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dap_model"


def imported_modules(path: Path, module: str) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in `path` (function-level ones included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[: -node.level] if path.name != "__init__.py" else module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.append((base, node.lineno))
            if base == "dap_model":  # `from dap_model import layout`
                out += [(f"dap_model.{a.name}", node.lineno) for a in node.names]
    return out


def is_dagster(module: str) -> bool:
    """Dagster or one of its libraries; `dagster_pipes` (no Dagster dependency: the protocol a
    process that Dagster launched reports through) is allowed."""
    top = module.split(".")[0]
    return top == "dagster" or (top.startswith("dagster_") and top != "dagster_pipes")


def import_graph(root: Path = PACKAGE) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """({unit: {imported unit: [file:line, ...]}}, places that import Dagster)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    dagster = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        src = unit_of(module)
        graph[src]  # every unit is a node, importing or not
        for target, line in imported_modules(path, module):
            if is_dagster(target):
                dagster.append(f"{rel}.py:{line}")
            if target.startswith("dap_model.") and unit_of(target) != src:
                graph[src][unit_of(target)].append(f"{rel}.py:{line}")
    return graph, dagster


def find_cycle(graph) -> list[str]:
    """One import cycle [a, b, ..., a] (graphlib's), or [] when the units form layers."""
    try:
        TopologicalSorter({u: set(deps) for u, deps in graph.items()}).prepare()
    except CycleError as err:
        return list(err.args[1])
    return []


def test_dap_model_units_import_each_other_without_cycles():
    graph, _ = import_graph()
    assert {"training", "distill", "data", "synthesis", "video", "models", "geometry", "sim", "tagging",
            "evaluation", "layout", "pool"} <= set(graph)
    cycle = find_cycle(graph)
    # graphlib lists a cycle against the edges' direction: c[i+1] imports c[i]
    where = [f"{b} -> {a} at {graph[b][a][0]}" for a, b in zip(cycle, cycle[1:])]
    assert not cycle, "an import cycle between dap_model's packages: " + "; ".join(where)


def test_layers_point_down():
    graph, _ = import_graph()
    for low, high in (("data", "synthesis"), ("data", "video"), ("distill", "training"), ("evaluation", "training"),
                      ("inference", "evaluation"), ("training", "cli")):
        assert high not in graph[low], f"{low} imports {high}: {graph[low][high]}"
    assert not graph["layout"]  # the store layout depends on nothing


def test_dap_model_never_imports_dagster():
    _, dagster = import_graph()
    assert not dagster, f"dap_model imports Dagster at {dagster}"


def test_the_graph_sees_cycles_and_dagster(tmp_path):
    pkg = tmp_path / "dap_model"
    for name, text in {"__init__.py": "", "a/__init__.py": "", "a/x.py": "def f():\n    from dap_model.b import y\n",
                       "b/__init__.py": "", "b/y.py": "from dap_model import a\nimport dagster\nimport dagster_pipes\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    graph, dagster = import_graph(pkg)
    assert "b" in graph["a"] and "a" in graph["b"] and sorted(find_cycle(graph)[:2]) == ["a", "b"]
    assert dagster == ["dap_model/b/y.py:2"]
    del graph["b"]["a"]
    assert find_cycle(graph) == []
