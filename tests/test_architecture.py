"""The code's large-scale shape: few function-level imports of project modules, each with a reason.

Imports only point down the layers (``config`` > ``loop`` > ``annotator`` > ``engine`` >
``segmentation``): ``lint-imports`` checks that (``make lint``, contract in pyproject.toml). An import
inside a function hides an edge from a reader and often a cycle; this test keeps them few and
explained (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("config", "loop", "annotator", "engine", "segmentation")
MAX_FUNCTION_LEVEL_IMPORTS = 10


def function_level_imports(source: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import of a project module inside a function body."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            found += [(node.lineno, module) for module in modules if module.split(".")[0] in PROJECT_PACKAGES]
    return sorted(set(found))


def has_reason(lines: list[str], line: int) -> bool:
    """A comment on the import's line (after the code) or on the line just above it."""
    return "#" in lines[line - 1] or lines[line - 2].strip().startswith("#")


def project_imports_in_functions() -> list[tuple[str, int, str, bool]]:
    rows = []
    for package in PROJECT_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = path.read_text()
            lines = source.splitlines()
            rows += [(str(path.relative_to(REPO_ROOT)), line, module, has_reason(lines, line))
                     for line, module in function_level_imports(source)]
    return rows


def test_the_counter_sees_imports_in_functions_and_methods_and_their_reasons():
    source = ("import engine\n\ndef f():\n    from annotator import models  # models need the app registry\n"
              "    import numpy\n\nclass C:\n    async def g(self):\n        # a cycle\n        import loop.training\n"
              "\n    def h(self):\n        from segmentation.masks import decode_rle\n")
    found = function_level_imports(source)
    assert found == [(4, "annotator"), (10, "loop.training"), (13, "segmentation.masks")]
    lines = source.splitlines()
    assert [has_reason(lines, line) for line, _ in found] == [True, True, False]


def test_few_function_level_imports_of_project_modules_each_with_a_reason():
    rows = project_imports_in_functions()
    listing = "\n".join(f"  {path}:{line} {module}{'' if reason else '  <- no reason comment'}"
                        for path, line, module, reason in rows)
    assert len(rows) <= MAX_FUNCTION_LEVEL_IMPORTS, (
        f"{len(rows)} function-level imports of project modules (at most {MAX_FUNCTION_LEVEL_IMPORTS}): import at "
        f"the top, or break the cycle they hide\n{listing}")
    assert all(reason for *_, reason in rows), f"each needs a one-line reason comment:\n{listing}"


def test_the_import_contract_layers_every_project_package_in_order_and_holds():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_packages"] == list(PROJECT_PACKAGES)
    layers = next(contract for contract in config["contracts"] if contract["type"] == "layers")
    assert layers["layers"] == list(PROJECT_PACKAGES)
    lint = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout[-3000:]


def import_cycle(imports: dict[str, set[str]]) -> list[str] | None:
    """One cycle of modules (first = last) in ``imports`` (module -> modules it imports), None when acyclic."""
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    cycle = import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_no_import_cycles_between_project_modules():
    """grimp's graph has function-level imports too, so a cycle cannot hide in one."""
    graph = grimp.build_graph(*PROJECT_PACKAGES)
    cycle = import_cycle({module: graph.find_modules_directly_imported_by(module) for module in graph.modules})
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"
