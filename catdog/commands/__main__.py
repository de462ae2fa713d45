"""`python -m catdog.commands ...`: the `catdog` command without its entry point."""

import sys

from catdog.commands import main

sys.exit(main())
