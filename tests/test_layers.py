"""Dependencies point one way (DESIGN.md): http -> the shop's API -> actors -> payments and
runtime -> store, with the shop's codes and request checks below them all.

Every import of every module counts, those inside functions too: an import moved into a
function to dodge a cycle is still the dependency it was.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import shopkeep

PACKAGE = Path(shopkeep.__file__).parent

MAY_IMPORT = {
    "store": {"tally"},
    "runtime": {"store", "tally"},
    "refusals": set(),
    "errors": {"refusals"},
    "requests": {"errors", "refusals", "runtime"},
    "payments": {"errors", "refusals", "requests", "runtime", "secret_files", "tally"},
    "actors": {"errors", "paging", "payments", "refusals", "requests", "runtime", "store"},
    "paging": {"errors", "refusals", "requests", "runtime"},
    "tally": set(),
    "secret_files": set(),
}
"""What each of the lower layers may import besides itself: nothing above it."""


def layer_of(module: str) -> str:
    """The layer of ``shopkeep.x.y``: its subpackage, or its top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "shopkeep"


def imports_by_layer() -> dict[str, dict[str, set[str]]]:
    """For each layer, each shopkeep layer it imports, with the files that import it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        importer = layer_of(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                raise AssertionError(f"{path}: a relative import, which this test cannot read")
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("shopkeep."):
                    found[importer][layer_of(name)].add(str(path.relative_to(PACKAGE)))
    return found


def test_each_lower_layer_imports_only_the_layers_below_it() -> None:
    found = imports_by_layer()
    wrong = {
        f"{layer} -> {imported}": sorted(files)
        for layer, allowed in MAY_IMPORT.items()
        for imported, files in found[layer].items()
        if imported != layer and imported not in allowed
    }
    assert wrong == {}


def test_every_layer_named_is_a_package_or_module_of_shopkeep() -> None:
    """A layer renamed or moved would leave its rule checking nothing."""
    named = set(MAY_IMPORT).union(*MAY_IMPORT.values())
    missing = {
        name for name in named
        if not (PACKAGE / name).is_dir() and not (PACKAGE / f"{name}.py").is_file()
    }
    assert missing == set()
