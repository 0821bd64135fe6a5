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
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "nastools",
        "--",
        "train",
        "--space",
        str(space),
        "--run",
        str(run),
        "--batch-size",
        "32",
        "--epochs",
        "0.02",
        "--steps",
        "4",
        "--eval-images",
        "100",
        "--no-progress",
        "--json",
    ]
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
    # the two processes shared each global batch of 32: the run's learning-rate schedule is
    # that of a 32-image batch (steps per epoch = 55000 // 32)
    assert summary["total_steps"] == round(0.02 * (55000 // 32))


def _average_in_rank(rank, port, out):
    import torch.distributed as dist

    from nastools.train import distributed as D

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        env = D.DistEnv(rank, 2, rank)
        both, one, none = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
        both.grad = torch.full((3,), float(rank + 1))  # 1 and 2: mean 1.5
        if rank == 1:
            one.grad = torch.full((3,), 4.0)  # the other rank counts as zeros: mean 2
        D.average_gradients([both, one, none], env)
        torch.save({"both": both.grad, "one": one.grad, "none": none.grad}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_average_gradients_leaves_a_weight_no_rank_used_without_a_gradient(tmp_path):
    # a zero gradient would still get weight decay and momentum from SGD
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_average_in_rank, args=(port, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        g = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(g["both"], torch.full((3,), 1.5))
        assert torch.equal(g["one"], torch.full((3,), 2.0))
        assert g["none"] is None
