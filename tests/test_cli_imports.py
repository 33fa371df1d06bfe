"""How the CLI may depend on the rest: through the SDK's public surface only, and
without import cycles between its own modules.

Both are read from the source (every import, at module level or inside a function),
so a command that is never run in the tests still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mofsim_client import AsyncMOFSimClient, AsyncTask, MOFSimClient, Task

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "mofsim_cli"
# Everything that uses the SDK as its users do.
SDK_USERS = [*sorted(CLI.glob("*.py")), *sorted((ROOT / "examples").glob("*.py"))]
SDK_USERS += sorted((ROOT / "bench").glob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


SDK_PRIVATE_MEMBERS = {
    name
    for cls in (MOFSimClient, AsyncMOFSimClient, Task, AsyncTask)
    for klass in cls.__mro__
    if klass.__module__.startswith("mofsim_client")
    for name in vars(klass)
    if _private(name)
} | {"_t", "_client"}  # instance attributes, set in __init__


def sdk_private_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Each import of a private SDK module or name, and each private attribute read
    from a client or a task handle."""
    found: list[str] = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mofsim_client"):
            module = node.module or ""
            names = [a.name for a in node.names]
            if any(_private(p) for p in module.split(".")) or any(map(_private, names)):
                found.append(f"{where}: from {module} import {', '.join(names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mofsim_client") and any(
                    _private(p) for p in alias.name.split(".")
                ):
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _dotted(node.value).lower()
            if node.attr in SDK_PRIVATE_MEMBERS or "client" in owner or "task" in owner:
                found.append(f"{where}: {_dotted(node.value)}.{node.attr}")
    return found


def test_the_cli_the_examples_and_the_benchmarks_use_only_the_public_sdk() -> None:
    found = [use for path in SDK_USERS for use in sdk_private_uses(path)]
    assert not found, "private SDK names used:\n" + "\n".join(found)


def test_the_scan_finds_private_uses(tmp_path: Path) -> None:
    # The check above passes only because there is nothing to find, not because the
    # scan is blind: each form it looks for is caught here.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from mofsim_client._http import Settings\n"
        "import mofsim_client._payload\n"
        "from mofsim_client.client import _private_helper\n"
        "def f(self, task):\n"
        "    self.client._t.request('GET', 'tasks')\n"
        "    task._client.health()\n"
        "    other._events('x', None, None)\n"
        "    self._call(1)\n"  # the CLI's own private method: allowed
    )
    uses = sorted(sdk_private_uses(sample, tmp_path), key=lambda s: int(s.split(":")[1]))
    found = [use.split(": ", 1)[1] for use in uses]
    assert found == [
        "from mofsim_client._http import Settings",
        "import mofsim_client._payload",
        "from mofsim_client.client import _private_helper",
        "self.client._t",
        "task._client",
        "other._events",
    ]


# --- import cycles ---------------------------------------------------------------------------


def cli_import_graph() -> dict[str, set[str]]:
    """``mofsim_cli`` module -> the ``mofsim_cli`` modules it imports anywhere in it."""
    graph: dict[str, set[str]] = {}
    for path in sorted(CLI.glob("*.py")):
        name = f"mofsim_cli.{path.stem}"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "mofsim_cli":
                    edges |= {f"mofsim_cli.{a.name}" for a in node.names}
                elif node.module.startswith("mofsim_cli."):
                    edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("mofsim_cli.")}
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_cli_modules_import_each_other_without_cycles() -> None:
    graph = cli_import_graph()
    assert "mofsim_cli.remote" in graph["mofsim_cli.backend"]  # the scan sees inner imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None
