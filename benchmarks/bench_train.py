"""Training throughput: supervised-only vs adversarial steps per second on real HOT/RAMP chips.

    python benchmarks/bench_train.py [--chip 128] [--batch 8] [--steps 20] [--device cpu|cuda]

Both step kinds use the same generator and batches; the adversarial step also updates the
conditional PatchGAN critic and back-propagates through it into G.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geoseg.inference import resolve_device  # noqa: E402
from geoseg.sampledata import sample_data_dir  # noqa: E402
from geoseg.training.chips import ChipSampler  # noqa: E402
from geoseg.training.config import parse_config  # noqa: E402
from geoseg.training.loader import chip_batches  # noqa: E402
from geoseg.training.trainer import Trainer, prepare_data  # noqa: E402


def config_for(args, adversarial_weight):
    data = sample_data_dir()
    ramp = data / "labeled" / "hotosm-ramp"
    raw = {
        "data": {
            "train": [
                {
                    "images": str(ramp / "chips" / "OAM-12384[45]*.tif"),
                    "masks": str(ramp / "binarymasks" / "{stem}.mask.tif"),
                }
            ],
            "val": [
                {
                    "images": str(ramp / "val-chips" / "OAM-1238424-1046544-21.tif"),
                    "masks": str(ramp / "val-binarymasks" / "{stem}.mask.tif"),
                }
            ],
            "chip_size_px": args.chip,
        },
        "generator": {"base_width": args.width, "depth": args.depth},
        "training": {"batch_size": args.batch, "adversarial_weight": adversarial_weight, "warmup_steps": 0},
    }
    return parse_config(raw, REPO)


def steps_per_second(args, adversarial_weight, data, device):
    config = config_for(args, adversarial_weight)
    trainer = Trainer(config, 3, data.mean, data.std, device)
    sampler = ChipSampler(data.train_chips, np.random.default_rng(0))
    batches = list(
        chip_batches(data.reader, sampler.plan(args.batch * (args.steps + args.warmup)), args.batch)
    )
    for batch in batches[: args.warmup]:
        trainer.train_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches[args.warmup :]:
        trainer.train_step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = prepare_data(config_for(args, 0.0))
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}; chip {args.chip} px, batch {args.batch}, "
        f"U-Net width {args.width} depth {args.depth}"
    )
    supervised = steps_per_second(args, 0.0, data, device)
    adversarial = steps_per_second(args, 0.01, data, device)
    px = args.batch * args.chip**2
    print(f"supervised-only: {supervised:6.2f} steps/s ({supervised * px / 1e6:.2f} Mpx/s)")
    print(
        f"adversarial:     {adversarial:6.2f} steps/s ({adversarial * px / 1e6:.2f} Mpx/s), "
        f"{supervised / adversarial:.2f}× the time per step"
    )


if __name__ == "__main__":
    main()
