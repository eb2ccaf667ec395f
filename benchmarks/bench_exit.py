"""Benchmark (issue 11, a run's tail): how long processes take to exit, with and without
``gc.freeze()`` before they do (what geoseg's CLI and local workers now do).

(a) A fresh process imports the worker's modules (task module: GDAL, GeoPandas, SciPy; model
    module: torch) and exits: seconds from the end of the imports to the process's end, plain
    and frozen.
(b) A local cluster of ``--workers`` worker processes with geoseg's preload, each having
    imported those modules and holding a result, is closed: with geoseg's preload
    (``worker_setup``, which freezes at teardown) and with a copy of it without the teardown.

    python benchmarks/bench_exit.py [--workers 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster

MODULES = "import geoseg.distributed.tasks, geoseg.distributed.worker_state"
IMPORTS_DONE_S = 20.0
"""Seconds left to the workers' background imports before the cluster is closed."""


def exit_seconds(freeze: bool) -> float:
    """Seconds from the end of a fresh process's imports to its end."""
    code = f"import time; {MODULES}; print(time.time(), flush=True)"
    if freeze:
        code += "; import gc; gc.freeze()"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.time() - float(process.stdout)


def close_seconds(workers: int, preload: str) -> float:
    """Seconds to close a local cluster of ``workers`` whose workers ran ``preload``."""
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", preload=[preload]
    )
    client = Client(cluster)
    client.wait_for_workers(workers)
    client.gather(client.map(lambda i: bytes(10_000_000), range(2 * workers), pure=False))
    time.sleep(IMPORTS_DONE_S)
    started = time.perf_counter()
    client.close()
    cluster.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for freeze in (False, True):
        runs = [exit_seconds(freeze) for _ in range(args.repeats)]
        name = "frozen" if freeze else "plain"
        print(f"(a) exit after the worker imports, {name}: best {min(runs):.2f} s")
    import geoseg.distributed.worker_setup as setup

    source = Path(setup.__file__).read_text().replace("def dask_teardown(", "def _no_teardown(")
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "plain_worker_setup.py"
        plain.write_text(source)
        for name, preload in (("plain", str(plain)), ("frozen", setup.__name__)):
            runs = [close_seconds(args.workers, preload) for _ in range(args.repeats)]
            each = ", ".join(f"{r:.2f}" for r in runs)
            print(f"(b) close {args.workers} workers, {name}: best {min(runs):.2f} s ({each})")


if __name__ == "__main__":
    main()
