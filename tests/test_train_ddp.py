"""DDP: ``torchrun --nproc-per-node 2 -m nastools -- train ...`` with 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import torch
from test_train import TINY


def test_two_process_ddp_run_keeps_the_replicas_identical(tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY)
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "nastools", "--",
           "train", "--space", str(space), "--run", str(run), "--batch-size", "32", "--epochs", "0.02", "--steps", "4",
           "--eval-images", "100", "--no-progress", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)  # only rank 0 prints
    assert summary["world_size"] == 2 and summary["step"] == 4
    log = [json.loads(ln) for ln in (run / "train.jsonl").read_text().splitlines()]
    # both ranks trained the same archs and hold the same weights (checked at the checkpoint)
    sync = [r for r in log if r["type"] == "sync"]
    assert sync and all(r["ranks_agree"] and r["world_size"] == 2 for r in sync)
    steps = [r for r in log if r["type"] == "step"]
    assert steps[-1]["step"] == 4 and steps[-1]["images_per_s"] > 0
    ckpt = torch.load(run / "supernet.pt", weights_only=True)
    assert ckpt["train"]["step"] == 4 and ckpt["train"]["config"]["batch_size"] == 32
    # weights no subnet uses (the shortcut convolutions of blocks after a stage's first) keep
    # their initial values, as in one process: DDP once gave them zero gradients, which SGD's
    # weight decay and momentum then moved
    from nastools.space import load_space
    from nastools.supernet import Supernet

    torch.manual_seed(0)
    init = Supernet(load_space(str(space))).state_dict()
    unused = [k for k in init if ".shortcut_conv." in k and not k.split(".")[2] == "0"]
    assert unused and all(torch.equal(ckpt["model"][k], init[k]) for k in unused)
    # the two processes shared each global batch of 32: the run's learning-rate schedule is
    # that of a 32-image batch (steps per epoch = 55000 // 32)
    assert summary["total_steps"] == round(0.02 * (55000 // 32))
