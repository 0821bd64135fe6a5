"""Write a finished fmnist training run as the shipped supernet nastools/pretrained/fmnist-attentive:
its weights-only checkpoint, train.jsonl, card.json (built from the checkpoint and the log) and README.

Usage: python training-state/package.py RUN   (from the repository root)
"""

import json
import sys
from pathlib import Path

from nastools.checkpoint import load_checkpoint
from nastools.machine import machine_info
from nastools.pretrained import package

RUN = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/runs/fmnist-attentive-e30")
DEST = Path(__file__).resolve().parent.parent / "nastools" / "pretrained" / "fmnist-attentive"
ck = load_checkpoint(RUN)
tr = ck["train"]
cfg = tr["config"]
recs = []
for line in (RUN / "train.jsonl").read_text().splitlines():
    try:
        recs.append(json.loads(line))
    except ValueError:
        pass
per_epoch = [
    {"epoch": int(e["epoch"]), "min": round(100 * e["top1_min"], 2), "max": round(100 * e["top1_max"], 2)}
    for e in recs
    if e.get("type") == "epoch" and not e.get("partial")
]
secs, prev = 0.0, None  # each process's clock starts at 0: add each segment's last time
for r in recs:
    if "time" not in r:
        continue
    if prev is not None and r["time"] < prev:
        secs += prev
    prev = r["time"]
secs = round(secs + (prev or 0.0), 1)
last = per_epoch[-1]
card = {
    "summary": (
        f"the fmnist space trained on Fashion-MNIST by nastools train: attentive-best (K={cfg['candidates']}), {cfg['epochs']:g} "
        f"epochs of batch {cfg['batch_size']}, augment auto (random crop, padding 2, + horizontal flip); val top-1 after the last "
        f"epoch: min {last['min']:.2f}%, max {last['max']:.2f}%"
    ),
    "command": "OMP_NUM_THREADS=1 nice -n 10 nastools train --run RUN --epochs 30 --checkpoint-every 10m\n# interrupted several times, each time continued (on 2 threads from step 356) with:\nOMP_NUM_THREADS=2 nice -n 10 nastools train --run RUN --resume --epochs 30 --checkpoint-every 10m",
    "space": ck["space"]["name"],
    "fingerprint": ck["fingerprint"],
    "dataset": cfg["dataset"],
    "config": cfg,
    "steps": tr["step"],
    "epochs": cfg["epochs"],
    "train_seconds": secs,
    "val_top1_per_epoch": per_epoch,
    "machine": machine_info(),
    "dates": "2026-12-06",
    "threads": "1 (to step 356), then 2",
    "nastools_commit": "4e8ada9 (start); resumed with later commits",
}
package(RUN, DEST, card)
print(json.dumps({k: card[k] for k in ("summary", "steps", "train_seconds")}, indent=1))
print(per_epoch)
