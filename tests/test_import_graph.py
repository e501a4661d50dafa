"""The package's import graph has no cycle: every module can be understood from what it imports.

Every ``import`` counts, at module level, under ``TYPE_CHECKING`` or inside a function (a lazy
import is still a dependency); importing a package counts as importing its ``__init__``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from composite.convert import convert

PACKAGE = Path(__file__).resolve().parent.parent / "composite"
REPO = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # ``from pkg import mod`` imports the submodule; ``from pkg import name``, the package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_is_read() -> None:
    graph = import_graph()
    assert "composite.model" in graph["composite.tiling"]
    assert "composite.cwsini" in graph["composite.server.slides"]
    assert "composite.formats.cws.read" in graph["composite.formats.cws"]


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_static_server_never_imports_format_code() -> None:
    """The server's static path (every module but :mod:`composite.server.virtual`, which serves
    slides stored in other formats and is imported lazily) reaches no format, convert or CLI code."""
    graph = import_graph()
    seen, pending = set(), ["composite.server"]
    while pending:
        node = pending.pop()
        if node not in seen and node != "composite.server.virtual":
            seen.add(node)
            pending.extend(graph[node])
    assert "composite.server.files" in seen and "composite.server.slides" in seen
    assert not [name for name in seen if name.startswith(("composite.formats", "composite.convert", "composite.cli"))]
    # ... and nothing in it imports the virtual module at its top level: only inside a function.
    for module in ("__init__", "files", "slides", "memory", "run", "limits", "accesslog"):
        tree = ast.parse((PACKAGE / "server" / f"{module}.py").read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module and "virtual" in n.module]
        assert not top, module


def test_a_cws_only_server_does_not_load_format_readers(tmp_path: Path, synthetic_svs: Path) -> None:
    """Start-up and the static path stay lean: serving CWS directories (and 404s in them) imports no
    reader; the first non-CWS slide does."""
    (tmp_path / "cws").mkdir()
    convert(synthetic_svs, tmp_path / "cws" / "one", to="cws")
    code = f"""
import asyncio, sys
from aiohttp.test_utils import TestClient, TestServer
from composite.server import create_app
async def main(root, url):
    async with TestClient(TestServer(create_app(root))) as client:
        assert (await client.get("/api/slides")).status == 200
        assert (await client.get(url)).status == 200
        for missing in ("/slides/one/Da99999.jpg", "/slides/one/FinalScan.ini/Da0.jpg", "/slides/Da0.jpg"):
            assert (await client.get(missing)).status == 404
asyncio.run(main({str(tmp_path / "cws")!r}, "/slides/one/Da0.jpg"))
print(sorted(m for m in sys.modules if m.startswith("composite.formats")))
shutil_target = {str(tmp_path / "cws" / "case.svs")!r}
import shutil; shutil.copy({str(synthetic_svs)!r}, shutil_target)
asyncio.run(main({str(tmp_path / "cws")!r}, "/slides/case.svs/Da0.jpg"))
print("composite.formats.cws.layout" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    lines = done.stdout.strip().splitlines()
    assert lines == ["[]", "True"], done.stdout + done.stderr


def test_warm_up_loads_the_readers_only_for_roots_with_such_slides(tmp_path: Path, synthetic_svs: Path) -> None:
    (tmp_path / "cws").mkdir()
    convert(synthetic_svs, tmp_path / "cws" / "one", to="cws")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "case.svs").write_bytes(synthetic_svs.read_bytes())
    code = f"""
import sys, threading
from composite.server import create_handler
def warmed(root):
    create_handler(root, warm_up=True)
    for thread in threading.enumerate():
        if thread.name == "composite-warm-up":
            thread.join()
    return any(m.startswith("composite.formats") for m in sys.modules)
print(warmed({str(tmp_path / "cws")!r}), warmed({str(tmp_path / "mixed")!r}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr
