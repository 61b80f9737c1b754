"""``python -m shopkeep``: the command line, as the ``shopkeep`` command runs it."""

import sys

from shopkeep.cli import main

if __name__ == "__main__":
    sys.exit(main())
