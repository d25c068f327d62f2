"""Real multi-process training through `accelerate launch` on CPU (gloo): DDP, DeepSpeed ZeRO-1 (bf16)
and ZeRO-2 (fp32; client optimizer, no JIT-compiled Adam). Each launch runs `chorus.train.run` on both ranks and
saves each rank's parameters; the checks compare the ranks with each other and, for the ZeRO-2
resume, with the uninterrupted launch."""
import json
import math
import os
import shutil

import pytest
import torch
from mlflow.tracking import MlflowClient

from chorus.data import read_manifest
from test_train_support import RANK_SCRIPT, ROOT, launch, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def launch_run(tmp, name, shards, *extra, port=29517):
    script = tmp / "rank_run.py"
    script.write_text(RANK_SCRIPT)
    out = tmp / f"{name}-out"
    out.mkdir()
    args = [str(script), str(out), QUICKSTART, *tiny(shards, str(tmp / name), tmp, *extra)]
    p = launch(args, nproc=2, port=port)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-6000:]
    res = [json.load(open(out / f"result_rank{r}.json")) for r in (0, 1)]
    for r in (0, 1):      # the run's process group was destroyed at exit, before finalization
        res[r]["at_exit"] = json.load(open(out / f"exit_rank{r}.json"))
    params = [torch.load(out / f"params_rank{r}.pt") for r in (0, 1)]
    return res, params, p


def check_ranks(res, params, shards, tmp, kind):
    r0, r1 = res
    assert r0["distributed_type"] == r1["distributed_type"] == kind
    assert r0["at_exit"] == r1["at_exit"] == {"process_group_alive": False}   # chorus.train.process_group
    assert r0["batches"] == r1["batches"] > 0                        # both ranks stepped, equally often
    assert r0["steps"] == r1["steps"] == r0["batches"]                  # no accumulation: one step per batch
    assert params[0].keys() == params[1].keys()
    for k in params[0]:
        assert torch.equal(params[0][k], params[1][k]), k               # identical replicas
    n_val = read_manifest(shards)["splits"]["val"]["num_samples"]
    assert r0["val"]["samples"] == r1["val"]["samples"] == n_val        # each val sample once over both ranks
    assert r0["val"]["acc"] == r1["val"]["acc"]
    assert r1["run_id"] is None and r0["run_id"]                       # MLflow on the main process only
    c = MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    hist = c.get_metric_history(r0["run_id"], "train/loss")
    assert sorted(m.step for m in hist) == list(range(1, r0["steps"] + 1))   # logged once per step
    assert len(c.get_metric_history(r0["run_id"], "val/acc")) == 2


def test_ddp_two_processes(shards, tmp_path):
    res, params, _ = launch_run(tmp_path, "ddp", shards, port=29521)
    check_ranks(res, params, shards, tmp_path, "MULTI_CPU")


@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_zero_two_processes_and_resume(shards, tmp_path, stage):
    ds = os.path.join(ROOT, "infra", "deepspeed", f"zero{stage}.json")
    precision = "bf16" if stage == 1 else "fp32"     # DeepSpeed bf16 casts the model: inputs and buffers follow
    res, params, _ = launch_run(tmp_path, "ds", shards, f"train.deepspeed={ds}", "train.keep_last=3",
                                f"train.precision={precision}", port=29530 + stage)
    check_ranks(res, params, shards, tmp_path, "DEEPSPEED")
    if stage != 2:
        # bf16: BatchNorm statistics stayed fp32 (no master copy would repair bf16 ones), and α was read
        # from the optimizer's fp32 master β, not from the bf16 copy the forward uses
        stats = {k: d for k, d in res[0]["buffer_dtypes"].items() if "running_" in k}
        assert stats and set(stats.values()) == {"torch.float32"}, stats
        alphas = res[0]["alpha"]
        assert alphas and alphas == res[1]["alpha"]
        betas = [math.log(a / (1 - a)) for a in alphas.values()]
        # a β read from bf16 sits on the bf16 grid up to fp32 rounding (~1e-7); the master copy is off it
        assert any(abs(b - torch.tensor(b).bfloat16().double().item()) > 1e-5 for b in betas), betas
        return
    # resume the epoch-1 checkpoint (ZeRO shards, optimizer, RNG) in a new run folder and finish epoch 2
    ck = tmp_path / "ds" / "checkpoints"
    first = sorted(n for n in os.listdir(ck) if n.startswith("step_"))[0]
    assert json.load(open(ck / first / "trainer_state.json"))["epoch"] == 1
    shutil.copytree(ck / first, tmp_path / "ds2" / "checkpoints" / first)
    res2, params2, p = launch_run(tmp_path, "ds2", shards, f"train.deepspeed={ds}", "train.resume=auto",
                                  port=29540)
    assert "resumed from" in p.stderr
    assert res2[0]["steps"] == res[0]["steps"] and res2[0]["batches"] == res[0]["batches"] // 2
    for k in params[0]:
        assert torch.allclose(params2[0][k], params[0][k], rtol=0, atol=1e-6), k
        assert torch.equal(params2[0][k], params2[1][k]), k
