"""Check the flags of documented commands that are not run (benchmarks, fault runs), in one process.

``python -m tests.readme_dryparse`` reads a JSON list of argv lists on stdin and prints a JSON list of
``[ok, message]``, one per command: the command's own parsers (click for ``monitor ...``, then the
argparse of ``monitor bench`` / ``monitor faults`` / ``python -m monitor.bench...``) parse its
arguments, and the first argparse parse that succeeds stops it: nothing runs past the parse. One
process for all of them: the imports (scipy, faust) are paid once.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import runpy
import sys


class Parsed(Exception):
    """Raised right after an argparse parse succeeded: the flags are valid, the command does not run."""


_parse_args = argparse.ArgumentParser.parse_args


def _parse_then_stop(self, args=None, namespace=None):
    _parse_args(self, args, namespace)
    raise Parsed(self.prog)


def check(argv: list[str]) -> tuple[bool, str]:
    """Parse one command's flags; (True, "flags parsed by PROG") or (False, why)."""
    import click

    out = io.StringIO()
    argparse.ArgumentParser.parse_args = _parse_then_stop
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if argv[0] == "monitor":
                from monitor.cli.main import main

                main.main(args=argv[1:], prog_name="monitor", standalone_mode=False)
            elif argv[0] in ("python", "python3") and argv[1:2] == ["-m"] and len(argv) > 2:
                saved, sys.argv = sys.argv, [argv[2], *argv[3:]]
                try:
                    runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
                finally:
                    sys.argv = saved
            else:
                return False, "not a `monitor` or `python -m` command: its flags cannot be checked"
    except Parsed as parsed:
        return True, f"flags parsed by {parsed}"
    except click.ClickException as exc:
        return False, f"{exc.format_message()} {out.getvalue()[-500:]}"
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            return True, "help printed"
        return False, f"exit {exc.code}: {out.getvalue()[-800:]}"
    finally:
        argparse.ArgumentParser.parse_args = _parse_args
    return False, f"ran to the end without an argparse parse: {out.getvalue()[-500:]}"


if __name__ == "__main__":
    print(json.dumps([check(argv) for argv in json.load(sys.stdin)]))
