"""The `monitor` command: `main.py` (every subcommand) and `views.py` (its rich tables).

:func:`run` is the console script's entry point: it loads the command (pandas, scipy, faust: seconds on
a busy machine) with Ctrl-C only noted, so that an interrupt while loading ends the program quietly
(exit status 130) instead of surfacing as an ImportError from inside an extension's initialisation.
"""

from __future__ import annotations

import importlib
import signal
import sys
from types import ModuleType


def load_noting_interrupts(module: str) -> tuple[ModuleType, bool]:
    """Import ``module`` with Ctrl-C only noted; the module and whether a Ctrl-C came meanwhile.

    A KeyboardInterrupt raised inside an extension's initialisation (scipy's) surfaces as an
    ImportError with a traceback, so while importing a SIGINT must not raise.
    """
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        return importlib.import_module(module), bool(interrupted)
    finally:
        signal.signal(signal.SIGINT, previous)


def run() -> None:
    """Load the `monitor` command and run it; a Ctrl-C during the load exits 130 without a traceback."""
    cli, interrupted = load_noting_interrupts("monitor.cli.main")
    if interrupted:
        sys.exit(128 + signal.SIGINT)
    cli.main()
