"""`python -m primus` == `primus`."""

import sys

# Guarded: torch_dist checkpoint writers spawn processes that re-import __main__.
if __name__ == "__main__":
    from primus.cli.main import main

    sys.exit(main())
