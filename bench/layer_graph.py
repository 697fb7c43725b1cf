"""Print the import graph between Masklet's top-level packages (grimp, the graph lint-imports checks).

``python bench/layer_graph.py [REPO]``: one row per pair of packages with the number of imports, module
level and inside functions alike, and every import that points up the layers (docs/ARCHITECTURE.md).
Run it on an older checkout to compare (``git worktree add /tmp/old <commit>``).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import grimp

#: Top to bottom; an import may only point to a package further down.
LAYERS = ("config", "loop", "annotator", "engine", "segmentation")


def edges(repo: Path) -> tuple[collections.Counter, list[str]]:
    """Import counts per (importer package, imported package) and the wrong-way imports, file:line."""
    sys.path.insert(0, str(repo))
    packages = [name for name in LAYERS if (repo / name).is_dir()]
    graph = grimp.build_graph(*packages)
    counts: collections.Counter = collections.Counter()
    upward = []
    for module in sorted(graph.modules):
        top = module.split(".")[0]
        for imported in graph.find_modules_directly_imported_by(module):
            other = imported.split(".")[0]
            if other == top:
                continue
            for detail in graph.get_import_details(importer=module, imported=imported):
                counts[(top, other)] += 1
                if LAYERS.index(other) < LAYERS.index(top):
                    upward.append(f"{module}:{detail['line_number']} -> {imported}")
    return counts, upward


def main() -> None:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
    counts, upward = edges(repo)
    print(f"{'importer':<14}{'imported':<14}{'imports':>8}")
    for (importer, imported), count in sorted(counts.items(), key=lambda item: (LAYERS.index(item[0][0]),
                                                                               LAYERS.index(item[0][1]))):
        print(f"{importer:<14}{imported:<14}{count:>8}")
    print(f"\n{len(upward)} imports point up the layers")
    for line in upward:
        print(f"  {line}")


if __name__ == "__main__":
    main()
