"""``python main.py serve | demo | bench | audit | backup | restore``: the command line in a
checkout.

The command line lives in :mod:`shopkeep.cli`; installed, it is the ``shopkeep`` command and
``python -m shopkeep``. This file stays so that a checkout runs without installing shopkeep
itself; its dependencies are in the virtualenv ``make`` builds (``.venv/bin/python main.py``).
"""

import sys


def run() -> int:
    """The command line, or one line saying what to do when a dependency is not installed
    (a Python other than the virtualenv's: each command imports what it needs as it starts)."""
    try:
        from shopkeep.cli import main

        return main()
    except KeyboardInterrupt:  # Ctrl-C while the command line loads: nothing was done
        return 130
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] == "shopkeep":
            raise  # a fault of shopkeep's own, not an install's
        sys.stderr.write(
            f"shopkeep: {missing.name} is not installed for {sys.executable}: run `make "
            "install`, then use .venv/bin/python main.py (or .venv/bin/shopkeep)\n"
        )
        return 2


if __name__ == "__main__":
    sys.exit(run())
