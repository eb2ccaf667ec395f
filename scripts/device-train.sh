#!/usr/bin/env bash
# Issue 12 on a lent GPU machine, in one go: from the repo root, with .device and
# .device-data (scripts/pack-trainset workflows/train-buildings-gpu.yaml) carried:
#   source .device/device-env.sh && bash scripts/device-train.sh
# 1. the building model from .device-data/train.yaml (all building-labelled uint8 RGB data,
#    whole places held out), one run per value of MAIN_JITTERS (data.color_jitter; default "0"),
#    side by side on the GPU with the loader processes shared out: same seed, MAIN_STEPS steps
#    (default: the config's), stopped early by MAIN_TIME_LIMIT s from the start (data preparation
#    included), then validated and saved: $OUT/buildings-unet-j<jitter>.safetensors (+ .log);
# 2. adversarial (weight 0.01) vs supervised-only twin, seeds 0 1 2, a smaller generator (base 16,
#    depth 3, bilinear), the same data and a fixed CMP_STEPS steps for each; the six run side by side
#    on the GPU. A safety limit of CMP_SAFETY_S s per run should not trigger; comparison.json says if
#    it did. Out: comparison.tar (the six checkpoints), comparison.json (history and metrics of each).
# Also $OUT/train.log (everything printed) and $OUT/gpu-util.csv (nvidia-smi each second).
# CPU dry run: OUT=/tmp/out DEVICE=cpu MAIN_TIME_LIMIT=1 CMP_STEPS=2 bash scripts/device-train.sh
# CMP_STEPS=0 trains the main model(s) only.
set -uo pipefail
OUT=${OUT:?set OUT to the output folder}
DEVICE=${DEVICE:-cuda}
MAIN_TIME_LIMIT=${MAIN_TIME_LIMIT:-170}
MAIN_JITTERS=${MAIN_JITTERS:-0}
MAIN_STEPS=${MAIN_STEPS:-}
CMP_STEPS=${CMP_STEPS:-1200}
CMP_SAFETY_S=${CMP_SAFETY_S:-150}
PACK=.device-data
mkdir -p "$OUT"
exec > >(tee -a "$OUT/train.log") 2>&1
tee_pid=$!
start=$SECONDS
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 1000 > "$OUT/gpu-util.csv" &
  smi=$!
fi

echo "== main model(s): $PACK/train.yaml, $DEVICE, colour jitter $MAIN_JITTERS, time limit $MAIN_TIME_LIMIT s"
mains=$(mktemp -d)
python3 - "$PACK" "$mains" "$MAIN_JITTERS" "$MAIN_STEPS" <<'EOF'
"""One config per colour-jitter value: the pack's settings, the loader processes shared out."""
import os
import sys
from pathlib import Path

import yaml

pack, mains, jitters, steps = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
raw = yaml.safe_load((pack / "train.yaml").read_text())
for entry in raw["data"]["train"] + raw["data"]["val"]:
    entry.update(images=str(pack / entry["images"]), masks=str(pack / entry["masks"]))
raw["packed_from"] = str(pack / "pack.json")
workers = max(2, (os.cpu_count() or 2) // len(jitters) - 1)
for jitter in jitters:
    data = {**raw["data"], "color_jitter": float(jitter), "loader_workers": workers}
    training = {**raw["training"], **({"steps": int(steps)} if steps else {})}
    config = {**raw, "data": data, "training": training}
    (mains / f"buildings-unet-j{jitter}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
EOF
pids=()
for config in "$mains"/*.yaml; do
  name=$(basename "${config%.yaml}")
  python3 -m geoseg train "$config" --device "$DEVICE" --time-limit "$MAIN_TIME_LIMIT" \
    --out "$OUT/$name.safetensors" > "$OUT/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a main training run FAILED (pid $pid, rc $?)"; done
for log in "$OUT"/buildings-unet-j*.log; do echo "-- $(basename "$log")"; tail -n 20 "$log"; done
echo "== main model(s) done at $((SECONDS - start)) s"

if [ "$CMP_STEPS" -gt 0 ]; then  # CMP_STEPS=0: the main model only
runs=$(mktemp -d)
python3 - "$PACK" "$runs" "$CMP_STEPS" "$CMP_SAFETY_S" <<'EOF'
"""One config per comparison run: the pack's data, a smaller generator, fixed steps."""
import sys
from pathlib import Path

import yaml

pack, runs, steps, safety = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
raw = yaml.safe_load((pack / "train.yaml").read_text())
for entry in raw["data"]["train"] + raw["data"]["val"]:
    entry.update(images=str(pack / entry["images"]), masks=str(pack / entry["masks"]))
raw["packed_from"] = str(pack / "pack.json")
raw["data"].update(chip_size_px=128, chip_stride_px=128, loader_workers=2)
raw["generator"] = {"base_width": 16, "depth": 3, "upsample": "bilinear"}
for seed in (0, 1, 2):
    for name, weight in (("adversarial", 0.01), ("supervised", 0.0)):
        training = {
            **raw["training"],
            "steps": steps,
            "batch_size": 16,
            "warmup_steps": min(300, steps // 5),
            "eval_every_steps": max(1, steps // 3),
            "seed": seed,
            "adversarial_weight": weight,
            "time_limit_s": safety,
            "num_threads": 2,
        }
        config = {**raw, "training": training, "out": str(runs / f"{name}-seed{seed}.safetensors")}
        (runs / f"{name}-seed{seed}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
EOF
echo "== comparison: 6 runs of $CMP_STEPS steps side by side ($runs)"
pids=()
for config in "$runs"/*.yaml; do
  python3 -m geoseg train "$config" --device "$DEVICE" > "${config%.yaml}.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a comparison run FAILED (pid $pid, rc $?)"; done
for log in "$runs"/*.log; do echo "-- $(basename "$log")"; tail -n 25 "$log"; done
echo "== comparison done at $((SECONDS - start)) s"

python3 - "$runs" "$OUT/comparison.json" <<'EOF'
"""History and final metrics of each comparison run (comparison.json) and a Markdown table."""
import json
import sys
from pathlib import Path

from geoseg.model.metadata import read_metadata

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
results = {}
for path in sorted(runs.glob("*.safetensors")):
    meta = read_metadata(path)
    config = meta.training["config"]
    results[path.stem] = {
        "seed": config["training"]["seed"],
        "adversarial_weight": config["training"]["adversarial_weight"],
        "steps": meta.training["steps"],
        "stopped_by_time_limit": meta.training["stopped_by_time_limit"],
        "seconds": meta.training["seconds"],
        "validation": meta.metrics["validation"],
        "history": meta.metrics["history"],
    }
out.write_text(json.dumps(results, indent=1))
print("| run | steps | time-limited | s | IoU | F1 | boundary F1 |\n|---|---|---|---|---|---|---|")
for name, r in results.items():
    v = r["validation"]
    print(
        f"| {name} | {r['steps']} | {r['stopped_by_time_limit']} | {r['seconds']} "
        f"| {v['iou']:.3f} | {v['f1']:.3f} | {v['boundary_f1']:.3f} |"
    )
EOF
tar -C "$runs" -cf "$OUT/comparison.tar" $(cd "$runs" && ls *.safetensors *.yaml *.log 2>/dev/null)
fi
ls -l "$OUT"
[ -n "${smi:-}" ] && kill "$smi"
echo "== all done at $((SECONDS - start)) s"
exec > /dev/null 2>&1
wait "$tee_pid"
