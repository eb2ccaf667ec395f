"""One run per output folder: the lock is held by the kernel for as long as its run lives."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from geoseg.errors import OutputError
from geoseg.runlock import LOCK_NAME, output_lock


def _take(output) -> None:
    with output_lock(output):
        pass


def _try_to_hold(output, barrier, results) -> None:
    barrier.wait()
    try:
        with output_lock(output):
            results.put("held")
            time.sleep(0.3)
    except OutputError as exc:
        results.put(str(exc))


def test_runs_racing_for_a_lock_left_by_a_killed_run_never_both_take_it(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(8):
        output = tmp_path / str(trial)
        output.mkdir()
        gone = {"host": socket.gethostname(), "pid": 2**22 + 1, "started": "yesterday"}  # above pid_max
        (output / LOCK_NAME).write_text(json.dumps(gone))
        barrier, results = context.Barrier(3), context.Queue()
        runs = [context.Process(target=_try_to_hold, args=(output, barrier, results)) for _ in range(3)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(30)
        outcomes = [results.get(timeout=5) for _ in runs]
        assert outcomes.count("held") == 1, outcomes
        assert all("another geoseg run" in o for o in outcomes if o != "held")
        assert not (output / LOCK_NAME).exists()


def test_a_lock_of_a_run_killed_by_sigkill_is_taken_over_and_a_live_ones_is_refused_naming_it(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from geoseg.runlock import output_lock\n"
            f"with output_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"another geoseg run \(pid {holder.pid} on .*wait for it$"):
            _take(tmp_path)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # SIGKILL left the file, not the lock
    with output_lock(tmp_path) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_file_written_on_another_host_is_respected_naming_the_file_to_delete(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "elsewhere", "pid": 7, "started": "today"}))
    with pytest.raises(OutputError, match=r"pid 7 on elsewhere.*delete this lock file if that run is over"):
        _take(tmp_path)
    assert (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_folder_or_link_where_the_lock_goes_is_refused_and_left_alone(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    lock = tmp_path / "out" / LOCK_NAME
    lock.parent.mkdir()
    lock.mkdir() if kind == "folder" else lock.symlink_to(victim)
    with pytest.raises(OutputError, match=f"is a {kind}, not geoseg's run lock"):
        _take(lock.parent)
    assert victim.read_text() == "keep"
