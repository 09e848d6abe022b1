"""`python -m UADContrastiveLib`: the `uadc` command line (see cli)."""
from .cli import run_and_exit

run_and_exit()
