"""The package is layers, each importing only those at or below it, and its import graph has no
cycles. Every import counts: module level, inside functions (lazy), under TYPE_CHECKING. There is
no exception list: a new import that runs upward or closes a loop fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "worldgame"

# The layers, bottom first: a module may import modules of its own layer or of a layer below.
# A module's layer is its top-level name under worldgame/ (a package or a single-file module).
LAYERS: list[set[str]] = [
    {"", "errors", "vocabulary", "fileio", "schema", "threads"},  # the words: errors, shared names, safe file writes, schema checks, the thread cap
    {"games"},  # ground-truth games and their registry of checked game settings
    {"settings"},  # each command's typed settings (hydra schemas); checks a game's settings against the registry
    {"data"},  # episodes (writer, reader), collection policies, training segments
    {"models"},  # the parts, WorldModel, samplers, the fast path (handed its int8 calibration frames by its caller)
    {"engine"},  # the UI-free tick: dream, fusion, tick core, sessions, the int8 calibration dream
    {"frontend"},  # the pygame window and the video export
    {"commands"},  # play, serve, bench, replay
    {"eval"},  # metrics, rollouts and reports (shows frames as play does, writes strips with the export's resize)
    {"train"},  # the training stages (validate with eval's measures, show samples as play does)
    {"cli", "__main__"},  # `worldgame <command>`: maps every command to its module
]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its text. ``from pkg import name``
    counts as importing ``pkg.name`` where that is a module, else ``pkg``; relative imports resolved."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}

    def resolve(name: str) -> str:
        while name not in paths:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names if a.name.split(".")[0] == "worldgame"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if base.split(".")[0] == "worldgame":
                    deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else resolve(base) for a in node.names}
        deps.discard(module)
        graph[module] = deps
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    found = [i for i, names in enumerate(LAYERS) if top in names]
    assert len(found) == 1, f"{module}: put its top-level name {top!r} in exactly one layer of LAYERS"
    return found[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_every_module_has_a_layer_and_no_import_runs_upward():
    graph = import_graph()
    assert len(graph) > 80
    assert upward_imports(graph) == []


def test_the_import_graph_has_no_cycles():
    assert cycles(import_graph()) == []


def test_the_check_sees_lazy_and_relative_imports(tmp_path):
    """The analysis itself: an import inside a function, a relative one and one under TYPE_CHECKING all
    count, upward ones are named, and a loop is found."""
    package = tmp_path / "worldgame"
    (package / "engine").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "engine" / "__init__.py").write_text("")
    (package / "settings.py").write_text("def f():\n    from worldgame.engine import dream\n")
    (package / "engine" / "dream.py").write_text("from . import lockstep\n")
    (package / "engine" / "lockstep.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import worldgame.engine.dream\n")
    graph = import_graph(package)
    assert graph["worldgame.settings"] == {"worldgame.engine.dream"}
    assert upward_imports(graph) == ["worldgame.settings -> worldgame.engine.dream"]
    assert cycles(graph) == [["worldgame.engine.dream", "worldgame.engine.lockstep"]]


def test_settings_import_only_the_words_and_the_game_registry():
    """settings/ is read by every command: it imports nothing that builds a model, a tick or a window."""
    graph = import_graph()
    package = [m for m in graph if m == "worldgame.settings" or m.startswith("worldgame.settings.")]
    assert len(package) > 1  # the package and its files, each checked
    outside = {d for m in package for d in graph[m] if d not in package}
    assert outside <= {
        "worldgame.errors", "worldgame.vocabulary", "worldgame.fileio", "worldgame.schema", "worldgame.games.registry"}


def test_the_engine_imports_no_ui():
    """The engine (what the window and the web page both drive) imports neither the front-end nor the commands."""
    graph = import_graph()
    assert {m: sorted(d for d in deps if d.startswith(("worldgame.frontend", "worldgame.commands")))
            for m, deps in graph.items() if m.startswith("worldgame.engine")
            and any(d.startswith(("worldgame.frontend", "worldgame.commands")) for d in deps)} == {}


if __name__ == "__main__":  # the counts, for a before/after note
    graph = import_graph()
    up, loops = upward_imports(graph), cycles(graph)
    print("\n".join(up))
    print("\n".join(" <-> ".join(c) for c in loops))
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(up)} upward, {len(loops)} cycles")
