"""The package's shape: no import cycles among its own modules, every module short.

Every import of a ``circuitspec`` module counts, wherever it sits: at module top,
inside a function, or under ``if TYPE_CHECKING:``. An import hidden in a function
to dodge a cycle still means two concepts lean on each other (STYLE item 1).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from helpers.paths import ROOT, TESTS

PACKAGE = ROOT / "circuitspec"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest package module that ``name`` names (a module, or a name inside one)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, modules: dict[str, Path], *, parents: bool = False) -> set[str]:
    """Every package module ``name`` imports, anywhere in its body; with ``parents``, also the
    packages an import runs on the way (``circuitspec.a.b`` runs ``circuitspec/a/__init__.py``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        for target in targets:
            if not target.startswith("circuitspec"):
                continue
            resolved = resolve(target, modules)
            while resolved:
                if resolved != name:
                    found.add(resolved)
                resolved = resolved.rpartition(".")[0] if parents else ""
    return found


def import_graph(*, parents: bool = False) -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(name, path, modules, parents=parents) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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


def test_the_graph_sees_imports_inside_functions_and_type_checking(tmp_path):
    """The checker itself: a cycle hidden in a function or a TYPE_CHECKING block is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from circuitspec.results import Result\n"
        "def f():\n    from . import errors\n    import circuitspec.spec.load\n"
    )
    module = PACKAGE / "verify" / "fake.py"
    path = tmp_path / "fake.py"
    path.write_text(source)
    modules = {
        "circuitspec.results": module,
        "circuitspec.verify": module,
        "circuitspec.verification.run.errors": module,
        "circuitspec.spec.load": module,
    }
    assert imports_of("circuitspec.verification.run.fake", path, modules) == {
        "circuitspec.results",
        "circuitspec.verification.run.errors",
        "circuitspec.spec.load",
    }


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"{len(found)} import cycle(s) among circuitspec's modules: {found}"


def test_no_import_cycles_through_package_inits():
    """The stricter reading: importing ``circuitspec.a.b`` also runs ``circuitspec.a``'s
    ``__init__``; no cycle through a package's ``__init__`` either."""
    found = cycles(import_graph(parents=True))
    assert not found, f"{len(found)} import cycle(s) through package __init__ modules: {found}"


def test_the_public_names_agree():
    """``__all__`` and the type stub name the same things, each resolves to what the stub says,
    and a name in neither is not there."""
    import circuitspec

    stub = ast.parse((PACKAGE / "__init__.pyi").read_text())
    imports = {a.asname or a.name: (n.module, a.name)
               for n in stub.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert set(circuitspec.__all__) - {"__version__"} == set(imports)
    for name, (module, original) in imports.items():
        assert getattr(circuitspec, name) is getattr(importlib.import_module(module), original), name
    assert not hasattr(circuitspec, "no_such_name")


def test_no_module_shadows_a_public_name():
    """``import circuitspec.x`` sets the attribute ``x`` on the package, so a module named like
    a public function (``verify``) would replace it: ``cs.verify(...)`` would call a module."""
    import circuitspec

    top = {name.split(".")[1] for name in package_modules() if name.count(".") >= 1}
    assert not top & set(circuitspec.__all__)


def test_every_module_is_short():
    long = {
        name: n
        for name, path in package_modules().items()
        if (n := len(path.read_text().splitlines())) >= MAX_LINES
    }
    assert not long, f"modules of {MAX_LINES} lines or more: {long}"


# The whole package's tests, not one module's: its shape here, its README's example.
WHOLE_PACKAGE_TESTS = {"test_layout.py", "test_readme.py"}


def test_the_tests_mirror_the_package():
    """tests/<stage>/ tests circuitspec/<stage>/ (tests/cli: the command line, end to end), and
    a test file left at the top of tests/ tests a top-level module (test_results.py: results.py)."""
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.parent.name for p in TESTS.glob("*/test_*.py")}
    assert folders <= stages | {"cli"}, f"test folders naming no package folder: {folders - stages - {'cli'}}"
    modules = {f"test_{p.stem}.py" for p in PACKAGE.glob("*.py")}
    loose = {p.name for p in TESTS.glob("test_*.py")} - modules - WHOLE_PACKAGE_TESTS
    assert not loose, f"test files at the top of tests/ that belong in a stage folder: {loose}"


def test_test_modules_share_code_only_through_helpers():
    """A test module imports helpers.x, never another test module or conftest, and never edits
    sys.path (pytest's importlib mode puts no test folder on it)."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            for name in names:
                top = name.split(".")[0]
                if name.startswith(".") or top in {"tests", "conftest"} or top.startswith("test_"):
                    found.append(f"{path.relative_to(TESTS)}: imports {name}")
            if (isinstance(node, ast.Attribute) and node.attr == "path"
                    and isinstance(node.value, ast.Name) and node.value.id == "sys"):
                found.append(f"{path.relative_to(TESTS)}:{node.lineno}: sys.path")
    assert not found, found
