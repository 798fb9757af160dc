"""Put on PYTHONPATH by tests/readme_commands.py for a documented command it does not run (a benchmark,
a fault run): the command's first argparse parse checks its flags, then the process ends (exit 0 when
they parse, argparse's exit 2 when not), before anything long starts."""

import argparse
import sys

_parse_args = argparse.ArgumentParser.parse_args


def _parse_then_exit(self, args=None, namespace=None):
    _parse_args(self, args, namespace)
    print(f"flags parsed by {self.prog}; not run", file=sys.stderr)
    sys.exit(0)


argparse.ArgumentParser.parse_args = _parse_then_exit
