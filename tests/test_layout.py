"""The direction of imports (CONTRIBUTING.md, "Layout"): each package imports only what it may.

- ``callbacks`` (what any method can use) never imports a method, a data format or the CLI;
  it may use ``lightning_modules.components``;
- ``datamodules`` import nothing from ``lightning_modules``, ``callbacks`` or ``experiments``;
- ``lightning_modules.components`` imports no method package;
- a method package imports no other method package (shared parts go to ``components``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHOD_PACKAGES = sorted(
    p.stem if p.is_file() else p.name
    for p in (REPO / "lightning_modules").iterdir()
    if p.name not in ("__init__.py", "components", "__pycache__")
    and (p.suffix == ".py" or (p / "__init__.py").is_file())
)


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``import a.b``, ``from a.b import c``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def forbidden_for(path: Path) -> tuple[str, ...]:
    """Module prefixes the file at ``path`` must not import."""
    parts = path.relative_to(REPO).with_suffix("").parts
    methods = tuple(f"lightning_modules.{m}" for m in METHOD_PACKAGES)
    if parts[0] == "callbacks":
        return (*methods, "datamodules", "experiments")
    if parts[0] == "datamodules":
        return ("lightning_modules", "callbacks", "experiments")
    if parts[:2] == ("lightning_modules", "components"):
        return (*methods, "datamodules", "experiments")
    if parts[0] == "lightning_modules" and len(parts) > 1:
        own = f"lightning_modules.{parts[1]}"
        return (*(m for m in methods if m != own), "experiments")
    return ()


FILES = sorted(
    p
    for top in ("callbacks", "datamodules", "lightning_modules")
    for p in (REPO / top).rglob("*.py")
)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_one_way(path):
    forbidden = forbidden_for(path)
    bad = sorted(
        name
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_the_rules_can_fail(tmp_path):
    """A callback importing a method is caught (the check reads what it should)."""
    probe = REPO / "callbacks" / "_layout_probe.py"
    assert forbidden_for(probe)[: len(METHOD_PACKAGES)]
    source = tmp_path / "probe.py"
    source.write_text("from lightning_modules.face_attributes import FaceAttributeClassifier\n")
    assert "lightning_modules.face_attributes" in imported_modules(source)
    assert "lightning_modules.face_attributes" in forbidden_for(probe)
