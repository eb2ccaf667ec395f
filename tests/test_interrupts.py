"""Ctrl-C is remembered where Python swallows it (a garbage-collector callback, as Dask installs)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, os, signal
from geoseg import interrupts

interrupts.install()

def press_ctrl_c(phase, info):
    if phase == "start":
        os.kill(os.getpid(), signal.SIGINT)  # raised inside this callback, where gc swallows it

gc.callbacks.append(press_ctrl_c)
gc.collect()
gc.callbacks.remove(press_ctrl_c)
print("requested", interrupts.requested())
try:
    interrupts.check()
except KeyboardInterrupt:
    print("raised at the check")
"""


def test_ctrl_c_swallowed_by_a_gc_callback_is_seen_at_the_next_check_and_not_printed():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["requested True", "raised at the check"], result.stderr
    assert "KeyboardInterrupt" not in result.stderr and "Exception ignored" not in result.stderr
