"""``python -m shopkeep.proof <group> [flags]``: run one proof group on demand.

The groups are looked up by name and imported only when asked for, so one group's heavy
dependencies (schemathesis, a server process) never slow another down. The packages only proofs
and tests need are the ``proof`` extra (``pip install 'shopkeep[proof]'``), not the shop's own
dependencies: a group that needs one that is missing says so in one line.
"""

from __future__ import annotations

import importlib
import sys

#: group name -> module of this package that implements it (each has ``main(argv) -> int``).
GROUPS: dict[str, str] = {
    "simulation": "shopkeep.proof.simulation",
    "kill9": "shopkeep.proof.kill9",
    "storage-faults": "shopkeep.proof.storage_faults",
    "callbacks": "shopkeep.proof.callbacks",
    "api-abuse": "shopkeep.proof.api_abuse",
    "soak": "shopkeep.proof.soak",
}


def main(argv: list[str]) -> int:
    """Dispatch to the named group's ``main`` with the remaining arguments."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m shopkeep.proof <group> [flags]   (each group has --help)")
        print("groups: " + ", ".join(GROUPS))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in GROUPS:
        print(
            f"shopkeep.proof: error: unknown group {name!r} (one of {', '.join(GROUPS)})",
            file=sys.stderr,
        )
        return 2
    try:
        module = importlib.import_module(GROUPS[name])
    except ModuleNotFoundError as error:
        if error.name is None or error.name.startswith("shopkeep"):
            raise
        print(
            f"shopkeep.proof: error: {name} needs {error.name}, which is not installed "
            "(pip install 'shopkeep[proof]')",
            file=sys.stderr,
        )
        return 2
    status: int = module.main(rest)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
