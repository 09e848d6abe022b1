"""The `uadc` commands, one module each, all in the same shape:

    add_parser(subparsers)   declares the command and its options (standard library only)
    run(args) -> int         does the work (heavy imports happen here) and returns the exit code

`cli` builds the parser from COMMANDS and dispatches to the chosen module's `run`.
"""
COMMANDS = ("detect", "preprocess", "cohort", "train", "calibrate", "evaluate", "models", "demo", "template",
            "worker")
