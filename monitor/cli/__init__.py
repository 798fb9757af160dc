"""The `monitor` command: `main.py` (every subcommand) and `views.py` (its rich tables).

:func:`run` is the console script's entry point: it loads the command (pandas, scipy, faust: seconds on
a busy machine) with Ctrl-C only noted, so that an interrupt while loading ends the program quietly
(exit status 130) instead of surfacing as an ImportError from inside an extension's initialisation.
"""

from __future__ import annotations

import signal
import sys


def run() -> None:
    """Load the `monitor` command and run it; a Ctrl-C during the load exits 130 without a traceback."""
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        from monitor.cli.main import main
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        sys.exit(128 + signal.SIGINT)
    main()
