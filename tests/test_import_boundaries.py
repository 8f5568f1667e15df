"""Import analysis (no module is run): services meet only through shared/ and the queues, and
``make demo`` runs on an installation without the test dependencies."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (REPO / "services").iterdir() if p.is_dir() and p.name != "__pycache__")
# Distributions of pyproject's dev extra, by the module names they import as; tools/ and tests/ hold
# test servers and fixtures.
TEST_ONLY = {
    "pytest",
    "moto",
    "ruff",
    "mypy",
    "check_jsonschema",
    "kubernetes_validate",
    "yamllint",
    "tools",
    "tests",
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at the top or inside a function, and for
    ``from a import b`` also ``a.b`` (b may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def repo_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_closure(module: str) -> dict[str, str]:
    """Every module reachable from ``module`` through the repository's own files -> who imports it."""
    seen: dict[str, str] = {module: ""}
    todo = [module]
    while todo:
        current = todo.pop()
        path = repo_file(current)
        if path is None:
            continue
        for name in imported_modules(path):
            for prefix in [".".join(name.split(".")[: n + 1]) for n in range(name.count(".") + 1)]:
                if prefix not in seen:
                    seen[prefix] = current
                    todo.append(prefix)
    return seen


def test_no_service_imports_another_services_package():
    crossings = []
    for service in SERVICES:
        for path in sorted((REPO / "services" / service).rglob("*.py")):
            for name in imported_modules(path):
                parts = name.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service and parts[1] in SERVICES:
                    crossings.append(f"{path.relative_to(REPO)} imports {name}")
    assert crossings == []


def test_the_closure_finds_a_crossing_when_there_is_one():
    """The analysis itself: the demo reaches the labeler's pipeline, which must reach no scraper."""
    closure = import_closure("services.demo")
    assert "services.labeler.pipeline" in closure and "shared.corpus" in closure
    assert "services.scraper.crawl" not in closure
    assert "tools.servers" in import_closure("tests.conftest")  # a known test-only import is found


def test_the_demo_imports_no_test_dependency():
    closure = import_closure("services.demo")
    found = {name: by for name, by in closure.items() if name.split(".")[0] in TEST_ONLY}
    assert found == {}, f"module -> imported by: {found}"
