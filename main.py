"""``python main.py serve | demo | bench | audit | backup | restore``: the command line in a
checkout.

The command line lives in :mod:`shopkeep.cli`; installed, it is the ``shopkeep`` command and
``python -m shopkeep``. This file stays so that a checkout runs without installing anything.
"""

import sys

from shopkeep.cli import main

if __name__ == "__main__":
    sys.exit(main())
