"""Imports point one way: agents -> tools and agents -> model_runtime; never back, never across.

Everything is imported through the one ``tilepilot`` package: no file imports the repository's folders
(``agents``, ``tools``, ``model_runtime``, ``rules``) as top-level names, which belong to other projects.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What each layer may not import. The root package (agents/api) is the public API over the agents.
FORBIDDEN = {
    "tools": ("tilepilot.agents", "tilepilot.model_runtime"),
    "model_runtime": ("tilepilot.agents", "tilepilot.tools"),
}
FOLDERS = ("agents", "tools", "model_runtime", "rules")


# Calls that take a module name as a string: a folder named there is imported all the same.
BY_NAME = {"files", "import_module", "find_spec", "set_forkserver_preload"}


def imported_names(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and node.args and getattr(node.func, "attr", getattr(node.func, "id", None)) in BY_NAME:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield first.value
            elif isinstance(first, ast.List):
                yield from (e.value for e in first.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "tilepilot":  # from tilepilot import agents
                yield from (f"tilepilot.{alias.name}" for alias in node.names)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_in_their_layer(package):
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in (REPO / package).rglob("*.py")
                 for name in imported_names(path) if any(within(name, f) for f in FORBIDDEN[package])]
    # The root package's own imports would drag the agents in too.
    offenders += [f"{path.relative_to(REPO)}: {name}" for path in (REPO / package).rglob("*.py")
                  for name in imported_names(path) if name == "tilepilot"]
    assert not offenders, offenders


def test_no_file_imports_a_repository_folder_as_a_top_level_name():
    files = [p for top in (*FOLDERS, "tests", "examples") for p in (REPO / top).rglob("*.py")]
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in files
                 for name in imported_names(path) if name.split(".")[0] in FOLDERS]
    assert files and not offenders, offenders


def test_only_eval_and_tests_use_the_test_rigs():
    """The reference answerer, the test apps, the X-server workers and the corpus generators ship behind the
    eval extra in tilepilot.agents.eval.rigs: no agent, tool or model code reaches them."""
    rigs, evals = "tilepilot.agents.eval.rigs", "tilepilot.agents.eval"
    files = [p for top in ("agents", "tools", "model_runtime") for p in (REPO / top).rglob("*.py")
             if not p.is_relative_to(REPO / "agents" / "eval")]
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in files for name in imported_names(path)
                 if within(name, rigs) or (within(name, evals) and path != REPO / "agents" / "cli.py")]
    assert files and not offenders, offenders


def test_the_listen_graph_does_not_know_the_agent():
    """The listen agent builds and drives its graph; the graph gets the model steps as functions (no cycle)."""
    graph = REPO / "agents" / "listen" / "graph.py"
    assert not any(within(name, "tilepilot.agents.listen.agent") for name in imported_names(graph))
