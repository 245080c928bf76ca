"""Import rules: model is the shared kernel; app and indexer never import each other."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "model": {"app", "indexer", "fastapi"},
    "app": {"indexer"},
    "indexer": {"app", "fastapi"},
}


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, dotted in full (any depth, TYPE_CHECKING blocks included).

    ``from tests import test_x`` names the module ``tests.test_x``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "tests":
                names |= {f"tests.{alias.name}" for alias in node.names}
    return names


def _imports(path: Path) -> set[str]:
    """The top-level packages a file imports."""
    return {name.split(".")[0] for name in _imported_modules(path)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_arrows(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    for path in files:
        bad = _imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_print_in_library_code() -> None:
    for package in FORBIDDEN:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            calls = [
                node
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ]
            assert not calls, f"{path.relative_to(ROOT)} uses print; use logging"


# --- The wings of model/ (docs/architecture.md) -------------------------------------------

#: What each wing of ``model`` may import of ``model`` besides itself. ``ct`` stands alone; the
#: network never reaches for clinical outputs or the catalogue; the catalogue knows scans only
#: by their address.
WING_MAY_IMPORT = {
    "ct": frozenset(),
    "nn": frozenset({"model.ct", "model.preprocessing"}),
    "clinical": frozenset({"model.ct", "model.nn", "model.preprocessing"}),
    "store": frozenset({"model.ct"}),
}
#: The kernel's top-level modules and what they may import of ``model``.
TOP_MAY_IMPORT = {
    "model.preprocessing": frozenset({"model.ct"}),
    "model.settings": frozenset({"model.ct.pacs"}),
    "model.threads": frozenset({"model.store"}),
}
#: Calls that construct a CT reader: only ``model.ct`` makes them. The service reaches them
#: through ``model.ct.open``'s door, from one module for each kind of CT it reads.
CT_READERS = frozenset(
    {
        "DicomSeriesSource",
        "DicomwebSeriesSource",
        "MetaImageRegionSource",
        "load_dicom_series",
        "load_itk_volume",
        "open_itk_source",
    }
)
#: ``model.ct.open``'s functions, and the one module of ``app`` that may call each: stored scans
#: through the scan door, uploaded files in the upload parser.
CT_DOOR_CALLERS = {
    "open_source": "app/scans.py",
    "open_pacs_series": "app/scans.py",
    "open_volume": "app/uploads/parse.py",
    "load_volume": "app/uploads/parse.py",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_imports(path: Path) -> set[str]:
    """Every first-party module a file imports."""
    return {n for n in _imported_modules(path) if n.split(".")[0] in FORBIDDEN}


def _allowed(imported: str, prefixes: frozenset[str]) -> bool:
    return any(imported == p or imported.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("wing", sorted(WING_MAY_IMPORT))
def test_each_wing_imports_only_what_it_may(wing: str) -> None:
    own = f"model.{wing}"
    files = sorted((ROOT / "model" / wing).rglob("*.py"))
    assert files
    for path in files:
        for imported in _project_imports(path):
            if not imported.startswith("model") or _allowed(imported, frozenset({own})):
                continue
            assert _allowed(imported, WING_MAY_IMPORT[wing]), (
                f"{path.relative_to(ROOT)} imports {imported}: the {wing} wing may import "
                f"{sorted(WING_MAY_IMPORT[wing]) or 'no other wing'}"
            )


def test_the_kernel_top_level_is_three_modules_and_the_wings() -> None:
    modules = {p.stem for p in (ROOT / "model").glob("*.py")} - {"__init__"}
    assert modules == {m.split(".")[1] for m in TOP_MAY_IMPORT}
    packages = {p.name for p in (ROOT / "model").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(WING_MAY_IMPORT)
    for module, may in TOP_MAY_IMPORT.items():
        path = ROOT / "model" / f"{module.split('.')[1]}.py"
        for imported in _project_imports(path):
            assert _allowed(imported, may), f"{module} imports {imported}; it may import {may}"


@pytest.mark.parametrize("wing", sorted(WING_MAY_IMPORT))
def test_each_wing_re_exports_its_public_names(wing: str) -> None:
    """Every name the wing's stub lists resolves, and nothing outside it imports a private name
    of the wing's modules from the other packages."""
    package = importlib.import_module(f"model.{wing}")
    assert package.__all__
    for name in package.__all__:
        assert getattr(package, name) is not None, f"model.{wing}.{name}"


def test_only_the_scan_door_opens_a_ct_in_the_service() -> None:
    for path in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            where = path.relative_to(ROOT).as_posix()
            assert name not in CT_READERS, f"{where} constructs a CT reader ({name})"
            if name in CT_DOOR_CALLERS:
                assert where == CT_DOOR_CALLERS[name], (
                    f"{where} calls {name}; only {CT_DOOR_CALLERS[name]} does (the scan door)"
                )


def test_no_import_cycle() -> None:
    files = [p for package in FORBIDDEN for p in sorted((ROOT / package).rglob("*.py"))]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _project_imports(path):
            # "from model.ct.open import x" names a module; "from model.ct import x" may name
            # an attribute of a package: the deepest known module is the edge's end.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (the graph has ~300 modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_tests_mirror_the_wings() -> None:
    for wing in WING_MAY_IMPORT:
        folder = ROOT / "tests" / "model" / wing
        assert (folder / "__init__.py").is_file(), folder
        assert any(folder.glob("test_*.py")), folder


def test_test_modules_import_helpers_not_one_another() -> None:
    """Shared test code lives in tests/helpers; a test module is never imported for its parts."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for imported in _imported_modules(path):
            if not imported.startswith("tests."):
                continue
            where = f"{path.relative_to(ROOT)} imports {imported}; shared code is in tests/helpers"
            assert imported.startswith("tests.helpers"), where
            assert not imported.rsplit(".", 1)[-1].startswith("test_"), where
