"""The engine's imports only look down: no circle between the modules of `nnmamba/`.

The graph is read from the source with `ast`, so it sees every import: module-level, inside a
function (the lazy ones that hide a circle from Python's import machinery), relative ones resolved
against their package. An import of a name from a package that is itself a module (`from
nnmamba.ssm import backends`) points at that module; of a function or class, at the module
defining the name's container (`from nnmamba.ssm.mamba import Mamba` -> nnmamba.ssm.mamba).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ENGINE = Path(__file__).resolve().parents[1] / "nnmamba"


def module_files(package_dir: Path) -> Dict[str, Path]:
    """Dotted module name -> file, for every .py under `package_dir` (a package is its __init__)."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _innermost_module(dotted: str, modules: Dict[str, Path]) -> str | None:
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _imported_names(node: ast.AST, module: str, is_package: bool) -> List[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names]


def import_graph(package_dir: Path) -> Dict[str, Set[str]]:
    """module -> the modules of the same package it imports (anywhere in its file)."""
    modules = module_files(package_dir)
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for imported in _imported_names(node, name, is_package):
                target = _innermost_module(imported, modules)
                if target is not None and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_engine_takes_part_in_an_import_circle():
    found = cycles(import_graph(ENGINE))
    assert found == [], "import circles (function-level imports included): " + "; ".join(
        " <-> ".join(component) for component in found)


def test_the_graph_sees_a_circle_closed_by_a_relative_import_inside_a_function(tmp_path):
    package = tmp_path / "toy"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "scan.py").write_text("def pick():\n    from ..planner import decide\n    return decide\n")
    (package / "planner.py").write_text("from toy.low import scan\n\ndef decide():\n    return scan\n")
    assert import_graph(package)["toy.low.scan"] == {"toy.planner"}
    assert cycles(import_graph(package)) == [["toy.low.scan", "toy.planner"]]
