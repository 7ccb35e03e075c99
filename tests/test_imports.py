"""The import structure of both packages, read from the source with ``ast``.

Two rules: no cycle among first-party modules, and no first-party import inside a
function (hiding an import in a function is how a cycle gets dodged instead of removed),
except to defer an optional dependency: the imported module must then load one of the
extras' packages (``OPTIONAL``) at import time, directly or through its own imports.
Imports under ``if TYPE_CHECKING:`` are for the type checker only and are not edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "flask_licensechain": ROOT / "flask_licensechain",
    "licensechain_middleware": ROOT / "middleware" / "licensechain_middleware",
}


#: top-level import names of the optional dependencies (pyproject's extras)
OPTIONAL = frozenset(
    {"redis", "psycopg", "uvicorn", "gunicorn", "prometheus_client", "websockets"}
    | {"flask_wtf", "argon2", "pyotp", "segno", "webauthn", "authlib"}  # the console extra
)


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported first-party module
    line: int
    in_function: bool


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, base in PACKAGES.items():
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    node: ast.AST, in_function: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _walk(other, in_function)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        yield from _walk(child, inner)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The first-party module that ``name`` is, or that defines it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(third_party: dict[str, set[str]] | None = None) -> list[Import]:
    """First-party imports; ``third_party`` gets each module's module-level other imports."""
    modules = _modules()
    found: list[Import] = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, in_function in _walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(module, is_package, node)
                # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
                targets = [t if t in modules else base for t in targets]
            for target in targets:
                owner = _owner(target, modules)
                if owner is not None and owner != module:
                    found.append(Import(module, owner, node.lineno, in_function))
                elif owner is None and not in_function and third_party is not None:
                    third_party.setdefault(module, set()).add(target.split(".")[0])
    return found


def _loads_optional(module: str, imports: list[Import], third_party: dict[str, set[str]]) -> bool:
    """Whether importing ``module`` imports an optional dependency (module-level edges only)."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.in_function:
            edges.setdefault(imp.source, set()).add(imp.target)
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if third_party.get(current, set()) & OPTIONAL:
            return True
        todo.extend(edges.get(current, ()))
    return False


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def _graph(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in imports:
        edges.setdefault(imp.source, set()).add(imp.target)
    return edges


def test_the_walker_sees_both_packages() -> None:
    imports = _imports()
    sources = {imp.source for imp in imports}
    assert "flask_licensechain.extension" in sources
    assert "licensechain_middleware.wsgi" in sources
    # A package importing its own submodule through `from . import x` is an edge to x.
    assert any(imp.target.startswith("flask_licensechain.core.") for imp in imports)


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_the_walker_sees_function_level_and_ignores_type_checking_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import b\n"
        "def f():\n    from .b import thing\n"
    )
    (package / "b.py").write_text("from . import a\n")
    monkeypatch.setitem(PACKAGES, "pkg", package)
    imports = [imp for imp in _imports() if imp.source.startswith("pkg")]
    assert {(imp.source, imp.target, imp.in_function) for imp in imports} == {
        ("pkg.a", "pkg.b", True),
        ("pkg.b", "pkg.a", False),
    }


def test_no_import_cycle_among_first_party_modules() -> None:
    """Imports inside functions count too: deferring an import does not break a cycle."""
    cycles = _cycles(_graph(_imports()))
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_first_party_import_inside_a_function() -> None:
    third_party: dict[str, set[str]] = {}
    imports = _imports(third_party)
    hidden = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in imports
        if imp.in_function and not _loads_optional(imp.target, imports, third_party)
    ]
    assert hidden == [], "\n".join(hidden)


def test_deferring_an_optional_dependency_is_recognised() -> None:
    third_party: dict[str, set[str]] = {}
    imports = _imports(third_party)
    # The gateway's metrics load prometheus_client (an extra); its settings load no extra.
    assert _loads_optional("licensechain_middleware.gateway.metrics", imports, third_party)
    assert not _loads_optional("licensechain_middleware.gateway.settings", imports, third_party)
    assert not _loads_optional("flask_licensechain.state", imports, third_party)
