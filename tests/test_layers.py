"""Imports follow the layers: no module imports a package above its own (a function-local
import included), and no two packages of nids_core import each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first, by module prefix (the longest that matches): the sensors target the jobs,
# and the code location (nids_jobs.definitions) gathers everything. nids_devkit is a
# harness beside the platform: only nids_cli (its demo, replay and broker commands) and
# the tests use it.
LAYERS = [
    "nids_core",
    "nids_resources",
    "nids_assets",
    "nids_jobs",
    "nids_sensors",
    "nids_jobs.definitions",
    "nids_cli",
]
HARNESS, HARNESS_USERS = "nids_devkit", ("nids_cli",)
PACKAGES = ("nids_core", "nids_resources", "nids_assets", "nids_jobs", "nids_sensors", "nids_cli")


def _layer(module: str) -> int:
    matches = [i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")]
    return max(matches, key=lambda i: len(LAYERS[i]))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0].startswith("nids_")]


def test_no_import_runs_up_a_layer():
    upward = []
    for package in (*PACKAGES, HARNESS):
        for path in sorted((ROOT / package).rglob("*.py")):
            here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for line, name in _imports(path):
                if package == HARNESS or name.startswith(HARNESS):
                    ok = (
                        name.startswith(("nids_core", HARNESS))
                        if package == HARNESS
                        else (here.startswith(HARNESS_USERS))
                    )
                else:
                    ok = _layer(name) <= _layer(here)
                if not ok:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not upward, "\n".join(upward)


def test_no_two_packages_of_nids_core_import_each_other():
    edges: dict[str, set[str]] = {}
    for path in sorted((ROOT / "nids_core").rglob("*.py")):
        parts = path.relative_to(ROOT / "nids_core").with_suffix("").parts
        here = parts[0]
        for _, name in _imports(path):
            bits = name.split(".")
            if bits[0] == "nids_core" and len(bits) > 1 and bits[1] != here:
                edges.setdefault(here, set()).add(bits[1])
    both_ways = sorted(
        {tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())}
    )
    assert not both_ways, both_ways
