"""Proofs that no unit of stock or money is lost or created, under faults (issue 6).

Each group is a module of this package with a ``main(argv) -> int`` entry point, run on demand as
``python -m shopkeep.proof <group> [flags]``; a bounded version of each runs in ``make test``.
Every group prints its figure as its last line.
"""
