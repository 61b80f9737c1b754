"""``python -m shopkeep``: the command line, as the ``shopkeep`` command runs it."""

import sys

if __name__ == "__main__":
    try:
        from shopkeep.cli import main
    except KeyboardInterrupt:  # Ctrl-C while the command line loads: nothing was done
        sys.exit(130)
    sys.exit(main())
