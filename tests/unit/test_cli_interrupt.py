"""A Ctrl-C while `monitor` is still loading its modules ends it quietly (exit 130, no traceback).

The SIGINT is sent by an import hook at the moment `monitor.cli.main` starts loading, so the test does
not depend on how fast the machine imports pandas and scipy.
"""

from __future__ import annotations

import subprocess
import sys

INTERRUPT_WHILE_LOADING = """
import importlib.abc, os, signal, sys

class InterruptOnLoad(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "monitor.cli.main":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptOnLoad())
sys.argv = ["monitor", "--help"]
from monitor.cli import run
run()
"""


def test_a_ctrl_c_while_loading_exits_130_without_a_traceback():
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_WHILE_LOADING], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Usage" not in proc.stdout


def test_without_an_interrupt_the_command_runs():
    proc = subprocess.run([sys.executable, "-m", "monitor", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Usage: " in proc.stdout
