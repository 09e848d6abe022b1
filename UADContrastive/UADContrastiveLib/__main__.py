"""`python -m UADContrastiveLib`: the `uadc` command line (see cli)."""
import sys

from .cli import main

sys.exit(main())
