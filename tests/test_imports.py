"""The package's import graph: no cycles, and no module imports one from a higher layer (docs/pipeline.md,
"Package layers"). Read from the source (every import, also inside functions), so it needs no torch."""

from __future__ import annotations

import ast
from pathlib import Path

from w2s_align.fingerprint import _imports

from helpers import REPO

PACKAGE = REPO / "src/w2s_align"
# Lowest first. A module may import modules of its own layer or of lower layers only.
LAYERS = [
    ("errors", "files", "logs", "registry", "fingerprint", "device"),
    ("settings",),
    ("cluster",),
    ("models",),
    ("data",),
    ("scoring",),
    ("train",),
    ("infer",),
    ("eval",),
    ("report",),
    ("debug",),
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("w2s_align", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name == "w2s_align":
            continue
        here = f"{name}.__init__" if path.name == "__init__.py" else name
        graph[name] = {
            m
            for m in _imports(ast.parse(path.read_text(encoding="utf-8")), here)
            if m != name and m != "w2s_align" and not name.startswith(m + ".")
        }
    return graph


def layer(module: str) -> int:
    top = module.split(".")[1]
    assert top in LAYER, f"{module}: add its top-level name to a layer in LAYERS (and docs/pipeline.md)"
    return LAYER[top]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_has_a_layer():
    graph = import_graph()
    assert len(graph) > 40
    for module in graph:
        layer(module)


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_import_from_a_higher_layer():
    upward = sorted(
        f"{m} -> {t}" for m, targets in import_graph().items() for t in targets if layer(t) > layer(m)
    )
    assert upward == []


def test_the_check_finds_a_cycle_and_an_upward_import():
    graph = {"w2s_align.models.a": {"w2s_align.train.b"}, "w2s_align.train.b": {"w2s_align.models.a"}}
    assert cycles(graph) == [["w2s_align.models.a", "w2s_align.train.b", "w2s_align.models.a"]]
    assert layer("w2s_align.train.b") > layer("w2s_align.models.a")
