"""Shared helpers of the training tests (no tests here): a small real N-Digits shard set, tiny
recipes on it, and `accelerate launch` of real processes."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")


def ndigits_shards(tmp_path_factory, limit: int = 400) -> str:
    """Shard the first ``limit`` digits of the embedded N-Digits once per test session."""
    from chorus.data import shard

    base = tmp_path_factory.getbasetemp()
    out = base / f"ndigits-{limit}"
    if not (out / "manifest.json").exists():
        with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
            card = yaml.safe_load(f)
        card["options"]["limit"] = limit
        card_path = base / f"ndigits-{limit}.yaml"
        card_path.write_text(yaml.safe_dump(card))
        shard(str(card_path), None, str(out), workers=1, shard_size_mb=1.0, progress=False)
    return str(out)


def tiny(shards: str, out: str, tmp_root, *extra: str) -> list[str]:
    """Overrides for a small, fast run of the quickstart model on the small shard set."""
    return [f"data.shards={shards}", "data.size=16", "data.T=3", "data.batch_size=16", "model.name=vgg_small",
            "model.args.width=0.5", "train.epochs=2", "train.progress=false", f"train.out_dir={out}",
            f"tracking.uri=sqlite:///{os.path.join(str(tmp_root), 'mlruns', 'mlflow.db')}", "tracking.experiment=t",
            "neuron.v_threshold=0.5", "optim.name=adamw", "optim.lr=0.005", "train.log_every=1", *extra]


def env(**extra) -> dict:
    e = dict(os.environ)
    e.update({"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
              "TORCH_EXTENSIONS_DIR": e.get("TORCH_EXTENSIONS_DIR", os.path.join(ROOT, ".cache", "torch_extensions"))})
    e.update(extra)
    return e


def launch(args: list[str], nproc: int = 2, timeout: float = 300, port: int = 29517, **kw):
    """``accelerate launch`` ``nproc`` CPU processes over gloo (ENVIRONMENT.md's working recipe)."""
    cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port), *args]
    return subprocess.run(cmd, env=env(ACCELERATE_USE_CPU="1"), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(tmp_path, wait_s: float = 90):
    """A real ``mlflow server`` on 127.0.0.1 over a sqlite store in ``tmp_path``, in its own session
    (kill it with ``os.killpg(server.pid, ...)``); returns ``(server, uri, db)`` once it answers."""
    import time

    from chorus.tracking.store import reachable

    port, db = free_port(), f"sqlite:///{tmp_path / 'server.db'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db, "--artifacts-destination",
         str(tmp_path / "art"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + wait_s
    while not reachable(uri, timeout=1)[0]:
        if time.time() > deadline or server.poll() is not None:
            os.killpg(server.pid, 9)
            raise AssertionError(f"mlflow server on {uri} did not start")
        time.sleep(0.5)
    return server, uri, db


RANK_SCRIPT = """
import atexit, json, os, sys, torch
from chorus.config import load_recipe
from chorus.train import run
out = sys.argv[1]
def at_exit():        # registered before the run's own handler, so atexit calls it after that one
    import torch.distributed as dist
    json.dump({"process_group_alive": dist.is_initialized()}, open(f"{out}/exit_rank{os.environ.get('RANK', 0)}.json", "w"))
atexit.register(at_exit)
result = run(load_recipe(sys.argv[2], sys.argv[3:]))
import torch.distributed as dist
rank = dist.get_rank() if dist.is_initialized() else 0
torch.save({k: v.detach().float().clone() for k, v in result["model"].state_dict().items()}, f"{out}/params_rank{rank}.pt")
json.dump({"batches": result["batches_this_rank"], "distributed_type": result["distributed_type"], "steps": result["steps"], "run_id": result["mlflow_run_id"],
           "val": result["val"], "test": result["test"],
           "buffer_dtypes": {k: str(b.dtype) for k, b in result["model"].named_buffers()},
           "alpha": {k: v for h in result["history"] for k, v in h.items() if k.startswith("mps/alpha/")}},
          open(f"{out}/result_rank{rank}.json", "w"))
"""
