"""Two "machines" on one host: the multi-node launch path, end to end, with real processes.

Two ``infra/launch/accelerate_node.sh`` processes (the script Slurm and Kubernetes run on every
node) with ``NUM_MACHINES=2`` and ranks 0 and 1 each run ``accelerate launch --num_machines 2``,
rendezvous on 127.0.0.1 and train the quickstart recipe on CPUs over gloo. When the machine allows
it, both run in a private network namespace that has only a loopback interface.

Chorus saves rank 0's weights only, so the processes run the real ``chorus`` CLI through a small
wrapper module (``TRAIN_MODULE``) that also records each rank's weights before and after training.
"""
from __future__ import annotations

import glob
import json
import time

import pytest
import torch

from test_infra_support import (REPO, NetNamespace, Service, child_env, free_port, small_shards,
                                tool)

RANK_PROBE = '''
"""The real `chorus` CLI, recording on every rank the parameters the model starts and ends with."""
import json
import os
import sys

import torch

import chorus.models
import chorus.train
from chorus.cli import main

OUT = os.environ["PROBE_DIR"]
RANK = int(os.environ["RANK"])
_create, _run = chorus.models.create, chorus.train.run


def create(*args, **kwargs):
    model = _create(*args, **kwargs)
    torch.save({k: v.detach().clone() for k, v in model.named_parameters()}, f"{OUT}/initial{RANK}.pt")
    return model


def run(recipe, hooks=None):
    summary = _run(recipe, hooks)
    model = summary["model"]
    torch.save({"params": {k: v.detach().float().cpu() for k, v in model.named_parameters()},
                "buffers": {k: v.detach().float().cpu() for k, v in model.named_buffers()}},
               f"{OUT}/final{RANK}.pt")
    with open(f"{OUT}/summary{RANK}.json", "w") as f:
        json.dump({"rank": RANK, "world_size": int(os.environ["WORLD_SIZE"]),
                   "steps": summary["steps"], "batches": summary["batches_this_rank"],
                   "run_dir": summary["run_dir"]}, f)
    return summary


chorus.models.create, chorus.train.run = create, run
sys.exit(main(sys.argv[1:]))
'''

BATCH = 16


@pytest.mark.slow
def test_two_machines_train_quickstart_to_the_same_parameters(tmp_path, tmp_path_factory):
    shards = small_shards(tmp_path_factory)
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "rank_probe.py").write_text(RANK_PROBE)
    run_dir = tmp_path / "run"
    port = free_port()
    ns = NetNamespace()
    isolated = ns.active
    env = child_env(
        CHORUS_CPU="1", MIXED_PRECISION="no", ACCELERATE=tool("accelerate"),
        NUM_MACHINES="2", PROCS_PER_NODE="1",
        MAIN_PROCESS_IP="127.0.0.1", MAIN_PROCESS_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1",
        TRAIN_MODULE="rank_probe", PYTHONPATH=str(probe_dir), PROBE_DIR=str(probe_dir),
    )
    args = ["bash", str(REPO / "infra/launch/accelerate_node.sh"), "recipes/quickstart.yaml",
            f"data.shards={shards}", f"data.batch_size={BATCH}", "train.epochs=1",
            "train.progress=false", "train.eval_test=false",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "--out", str(run_dir)]
    nodes = []
    start = time.monotonic()
    try:
        for rank in (0, 1):
            nodes.append(Service(ns.wrap(args), tmp_path / f"node{rank}.log",
                                 env={**env, "MACHINE_RANK": str(rank)}))
        for node in nodes:
            try:
                code = node.proc.wait(timeout=600)
            except Exception:
                pytest.fail("training did not finish:\n" + "\n".join(n.output()[-3000:] for n in nodes))
            assert code == 0, node.output()[-5000:]
        took = time.monotonic() - start
    finally:
        for node in nodes:
            node.stop()
        ns.delete()
    where = "a private network namespace" if isolated else "the host's loopback"
    print(f"two-machine training in {where} took {took:.1f} s")

    logs = [n.output() for n in nodes]
    for rank, log in enumerate(logs):
        assert f"chorus node {rank}/2: 1 processes, rendezvous 127.0.0.1:{port}" in log

    # Both ranks were one job of world size 2 and took the same number of steps.
    summaries = [json.loads((probe_dir / f"summary{r}.json").read_text()) for r in (0, 1)]
    assert [s["rank"] for s in summaries] == [0, 1]
    assert {s["world_size"] for s in summaries} == {2}
    manifest = json.loads((shards / "manifest.json").read_text())
    steps = manifest["splits"]["train"]["num_samples"] // (2 * BATCH)
    assert [s["steps"] for s in summaries] == [steps, steps]
    assert [s["batches"] for s in summaries] == [steps, steps]

    initial = [torch.load(probe_dir / f"initial{r}.pt") for r in (0, 1)]
    final = [torch.load(probe_dir / f"final{r}.pt") for r in (0, 1)]
    names = sorted(final[0]["params"])
    assert names and names == sorted(final[1]["params"]) == sorted(initial[0])
    for name in names:
        assert torch.equal(initial[0][name], initial[1][name]), name
        assert torch.equal(final[0]["params"][name], final[1]["params"][name]), f"ranks differ in {name}"
    moved = [n for n in names if not torch.equal(initial[0][n], final[0]["params"][n])]
    assert len(moved) == len(names), f"parameters that training left unchanged: {set(names) - set(moved)}"

    # chorus' own checkpoint (written by rank 0) holds those same parameters.
    (checkpoint,) = glob.glob(str(run_dir / "checkpoints" / "step_*" / "model.pt"))
    saved = torch.load(checkpoint)
    for name in names:
        assert torch.equal(saved[name].float(), final[1]["params"][name]), name

    # BatchNorm running statistics are buffers, not parameters: DDP broadcasts them from rank 0 at
    # each training forward, after which every rank updates them on its own batch. Report the drift.
    drift = max((final[0]["buffers"][k] - final[1]["buffers"][k]).abs().max().item()
                for k in final[0]["buffers"] if final[0]["buffers"][k].is_floating_point())
    print(f"largest BatchNorm running-statistics difference between ranks: {drift:.2e}")
    assert drift < 0.5
