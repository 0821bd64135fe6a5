#!/bin/bash
# After `python training-state/package.py RUN` has replaced the shipped supernet: rerun every
# benchmark whose result rests on it, one after another on both cores, and capture the demo's
# transcript. Run from the repository root: `nohup bash training-state/refresh.sh > refresh.log 2>&1 &`
# (each step prints its own result; a killed bench_search resumes from its accuracy caches).
set -x
PY=.venv/bin/python
export OMP_NUM_THREADS=2
$PY benchmarks/bench_pretrained.py
.venv/bin/nastools curve fmnist-attentive --plot benchmarks/results/bench_pretrained/amd-epyc-f25m17/2026-12-06-curve.png
/usr/bin/time -f "demo wall %e s" .venv/bin/nastools demo --fresh > runs/demo-transcript.txt 2>&1
$PY benchmarks/bench_search.py --vs-random-pool 300 --workers 2
$PY benchmarks/bench_search.py --vs-random-pool 300 --workers 2 --rerank 0
$PY benchmarks/bench_search.py --vs-random-pool 300 --workers 2 --seed 1
$PY benchmarks/bench_search.py --vs-random-pool 300 --workers 2 --seed 1 --rerank 0
$PY benchmarks/bench_search.py --run fmnist-attentive --eval-speed 16 --calib-images 1000 --eval-images 2000
$PY benchmarks/bench_train.py throughput  # the training step against the NCHW code path (defaults, demo)
$PY benchmarks/index.py
