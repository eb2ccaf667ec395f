"""Benchmark (issue 2): peak memory of ``geoseg predict`` stays flat as the scene grows.

Each size runs ``geoseg predict`` in its own subprocess on a real-pixel mosaic (see
``_scenes.py``); the child's peak resident memory comes from ``os.wait4`` (its own
``ru_maxrss``, so runs do not mask each other). The uncompressed scene size is shown beside it:
a whole-scene read would need at least that much.

    python benchmarks/bench_predict_memory.py [--sizes 2048 4096 8192] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import REPO, benchmark_model, mosaic_scene, scene_megapixels, worktree


def predict_peak_rss(
    scene: Path, model: Path, out: Path, extra: list[str], tree: Path
) -> tuple[float, float]:
    """Run ``geoseg predict`` from source ``tree`` on ``scene``: (peak RSS in MiB, wall seconds)."""
    command = [
        sys.executable,
        "-m",
        "geoseg",
        "predict",
        str(scene),
        "--model",
        str(model),
        "--out",
        str(out),
    ]
    errors = out.with_suffix(".stderr")
    start = time.perf_counter()
    with errors.open("wb") as stderr:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        child = subprocess.Popen([*command, *extra], stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"geoseg predict failed on {scene}:\n{errors.read_text()}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    """Build each scene, predict it in a subprocess, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192], help="scene sides (px)")
    parser.add_argument("--model", type=Path, help="checkpoint (default: shipped, else untrained)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compare", metavar="REF", help="also run geoseg predict from git REF")
    args = parser.parse_args()
    model, described = benchmark_model(args.model)
    extra = ["--device", args.device, "--block-size", str(args.block_size)]
    extra += ["--batch-size", str(args.batch_size)]
    print(f"model: {described}; {os.cpu_count()} CPUs; block {args.block_size}, batch {args.batch_size}")
    trees = {"this tree": REPO, **({args.compare: worktree(args.compare)} if args.compare else {})}
    print("| code | scene | Mpx | uncompressed scene | peak RSS | wall | Mpx/s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            scene = mosaic_scene(size)
            mpx = scene_megapixels(scene)
            for name, tree in trees.items():
                out = Path(tmp) / f"mask-{size}.tif"
                peak_mib, seconds = predict_peak_rss(scene, model, out, extra, tree)
                raw_mib = 3 * mpx * 1e6 / 2**20
                cells = [name, f"{size}²", f"{mpx:.0f}", f"{raw_mib:,.0f} MiB", f"{peak_mib:,.0f} MiB"]
                cells += [f"{seconds:.0f} s", f"{mpx / seconds:.2f}"]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
