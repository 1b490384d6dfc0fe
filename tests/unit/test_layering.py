"""include/ is packages only, and each package imports only the packages listed above it (include/README.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

INCLUDE = Path(__file__).resolve().parents[2] / "include"
# Low to high, as include/README.md lists them: a package may import only those before it.
LAYERS = ["core", "settings", "aws", "checks", "fleet", "reach", "logs", "watch", "evidence", "integrity", "remediation", "verify",
          "report", "notify", "exports", "tasks"]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported include module) of every import in the file, wherever it stands (lazy imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("include"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("include")]
    return found


def upward(root: Path = INCLUDE, layers: list[str] = LAYERS) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        package = path.relative_to(root).parts[0]
        if package not in layers:
            continue
        for line, module in imports_of(path):
            target = module.split(".")[1] if "." in module else ""
            if target in layers and layers.index(target) > layers.index(package):
                problems.append(f"{path.relative_to(root.parent)}:{line} imports {module} ({target} is above {package})")
    return problems


def test_include_holds_only_packages_each_in_the_table():
    loose = sorted(p.name for p in INCLUDE.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    packages = sorted(p.name for p in INCLUDE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert packages == sorted(LAYERS)
    readme = (INCLUDE / "README.md").read_text()
    assert [name for name in LAYERS if f"`{name}/`" not in readme] == []


def test_no_import_runs_up_the_layers():
    assert upward() == []


@pytest.mark.parametrize("source, expected", [
    ("from include.tasks import audit\n", 1),  # core importing the top: refused
    ("def f():\n    from include.verify.batch import BatchRun\n", 1),  # a lazy import counts the same
    ("from include.core.status import Status\n", 0),
])
def test_an_upward_import_is_found(tmp_path, source, expected):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "x.py").write_text(source)
    assert len(upward(tmp_path)) == expected
