"""`python -m primus` == `primus`."""

import sys

from primus.cli.main import main

sys.exit(main())
