"""The import graph of tfrec: no cycle between packages or modules, and no upward import.

Every `tfrec/**/*.py` is parsed with ast (nothing is imported, so this is fast); imports at module
level and inside functions both count, since either one ties the two modules together. Layers,
lowest first; a module may import its own layer and the layers below it, never one above:

    tfrec (the package root), errors, paths, atomic, tf_setup
    -> schema -> data -> text -> config -> model -> heads -> evaluate -> train -> search -> export
    -> serving -> cli

`tfrec/<package>/commands.py` modules are CLI glue (argument parsing, one call per verb): they
belong to the cli layer, whatever folder they sit in. Run this file as a script to print the
package graph.
"""

import ast
import collections
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tfrec"

LAYERS = [
    ("tfrec", "errors", "paths", "atomic", "tf_setup", "config_fields"),
    ("schema",),
    ("data",),
    ("text",),
    ("config",),
    ("model",),
    ("heads",),
    ("evaluate",),
    ("train",),
    ("search",),
    ("export",),
    ("serving",),
    ("cli",),
]
RANK = {node: rank for rank, nodes in enumerate(LAYERS) for node in nodes}
# Allowed by the layers, but not wanted: serving works from SavedModels alone.
FORBIDDEN = {("serving", "data"), ("serving", "model"), ("serving", "heads"),
             ("serving", "train")}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of tfrec (a package is its __init__)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("tfrec", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an Import / ImportFrom node refers to (absolute, maybe not modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1])
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module
    # `from a import b` imports the module a.b if there is one, else the name b of module a
    return [f"{source}.{alias.name}" for alias in node.names] + [source]


def module_graph() -> dict[str, dict[str, int]]:
    """module -> {imported tfrec module: line of the first such import}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = _imported(node, module, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):  # `from pkg import sub`: the submodule only
                names = [n for n in names[:-1] if n in modules] or names[-1:]
            for name in names:
                while name not in modules and "." in name:  # tfrec.a.b.Name -> tfrec.a.b
                    name = name.rsplit(".", 1)[0]
                if name in modules and name != module and name.startswith("tfrec"):
                    edges.setdefault(name, node.lineno)
        graph[module] = edges
    return graph


def node_of(module: str) -> str:
    """The layer node of a module: its top-level package or module, or "cli" for CLI glue."""
    parts = module.split(".")
    if len(parts) == 1:
        return "tfrec"
    if parts[-1] == "commands" and len(parts) == 3:
        return "cli"
    return parts[1]


def package_graph(graph) -> dict[str, dict[str, list[str]]]:
    """node -> {imported node: ["tfrec.a.x:12 -> tfrec.b.y", ...] (the module imports)}."""
    out: dict[str, dict[str, list[str]]] = collections.defaultdict(dict)
    for module, edges in graph.items():
        out[node_of(module)]  # every node, even one without imports
        for target, line in edges.items():
            a, b = node_of(module), node_of(target)
            if a != b:
                out[a].setdefault(b, []).append(f"{module}:{line} -> {target}")
    return dict(out)


def cycles(graph: dict) -> list[list[str]]:
    """One cycle [a, b, ..., a] through each strongly connected component of `graph`
    (node -> iterable of nodes) that has more than one node."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = itertools.count()

    def connect(v):  # Tarjan's algorithm
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_cycle_in(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _cycle_in(graph, component: set) -> list[str]:
    """A shortest cycle through the first node (by name) of a strongly connected component."""
    start = min(component)
    paths = collections.deque([[start]])
    while paths:
        path = paths.popleft()
        for w in sorted(graph.get(path[-1], ())):
            if w == start:
                return path + [start]
            if w in component and w not in path:
                paths.append(path + [w])
    raise AssertionError("a strongly connected component has a cycle")


def test_every_package_has_a_layer():
    unplaced = sorted(set(package_graph(module_graph())) - set(RANK))
    assert not unplaced, f"place {unplaced} in LAYERS of tests/test_import_graph.py"


def test_no_import_cycle_between_packages():
    packages = package_graph(module_graph())
    messages = []
    for cycle in cycles(packages):
        steps = [f"{a} -> {b} ({packages[a][b][0]})" for a, b in zip(cycle, cycle[1:])]
        messages.append("cycle " + " -> ".join(cycle) + ": " + "; ".join(steps))
    assert not messages, "\n".join(messages)


def test_no_import_cycle_between_modules():
    graph = module_graph()
    messages = [" -> ".join(c) for c in cycles(graph)]
    assert not messages, "module cycles:\n" + "\n".join(messages)


def test_no_layer_imports_a_higher_one():
    upward = [f"{a} (layer {RANK[a]}) imports {b} (layer {RANK[b]}): {', '.join(where)}"
              for a, targets in package_graph(module_graph()).items()
              for b, where in targets.items() if RANK[a] < RANK[b]]
    assert not upward, "\n".join(upward)


def test_no_forbidden_import():
    found = [f"{a} imports {b}: {', '.join(where)}"
             for a, targets in package_graph(module_graph()).items()
             for b, where in targets.items() if (a, b) in FORBIDDEN]
    assert not found, "\n".join(found)


def test_the_checker_finds_a_planted_cycle_and_names_it():
    graph = {"data": {"schema"}, "schema": {"errors"}, "errors": set(),
             "train": {"export", "evaluate"}, "export": {"train"}, "evaluate": set()}
    assert cycles(graph) == [["export", "train", "export"]]
    graph["schema"] = {"data"}
    assert sorted(cycles(graph)) == [["data", "schema", "data"], ["export", "train", "export"]]


def test_the_parser_sees_function_level_and_relative_imports(tmp_path):
    code = "import os\nfrom . import b\n\ndef f():\n    from ..errors import E\n"
    nodes = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [_imported(n, "tfrec.pkg.a", False) for n in nodes]
    assert names == [["os"], ["tfrec.pkg.b", "tfrec.pkg"], ["tfrec.errors.E", "tfrec.errors"]]
    assert [node_of(m) for m in ("tfrec", "tfrec.cli", "tfrec.train.fit",
                                 "tfrec.train.commands")] == ["tfrec", "cli", "train", "cli"]


if __name__ == "__main__":
    for node, targets in sorted(package_graph(module_graph()).items(), key=lambda x: RANK[x[0]]):
        print(f"{node:>9} -> {', '.join(sorted(targets, key=RANK.get)) or '-'}")
