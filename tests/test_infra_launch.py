"""infra/ launch paths run for real: ``accelerate launch`` with each config, the per-node script, the
Slurm and Kubernetes commands (with stub ``srun``/``scontrol``/``accelerate``), the wheel, and the
Ray wait helper.

A probe script stands in for ``chorus train`` where only the launch matters: it builds an
``Accelerator`` and prints what it got (distributed type, world size, DeepSpeed plugin).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from test_infra_support import REPO, child_env, free_port, tool

INFRA = REPO / "infra"
NODE_SCRIPT = INFRA / "launch" / "accelerate_node.sh"
DEEPSPEED_YAMLS = ["deepspeed_zero1.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3_offload.yaml"]

ACCELERATOR_PROBE = '''
import json, sys
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs

# what chorus.train.setup does on a CPU: precision from the recipe, gloo made explicitly
acc = Accelerator(mixed_precision=sys.argv[1], kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
plugin = acc.state.deepspeed_plugin
print("PROBE " + json.dumps({
    "type": acc.distributed_type.value, "rank": acc.process_index, "world_size": acc.num_processes,
    "zero_stage": plugin.zero_stage if plugin else None,
    "zero3_init": bool(plugin.zero3_init_flag) if plugin else None,
    "bf16": plugin.deepspeed_config.get("bf16", {}).get("enabled") if plugin else None,
    "mixed_precision": acc.mixed_precision}), flush=True)
'''

WORLD_PROBE = '''
import json
import torch.distributed as dist
from accelerate import Accelerator

acc = Accelerator()
print("PROBE " + json.dumps({
    "type": acc.distributed_type.value, "rank": acc.process_index, "world_size": acc.num_processes,
    "backend": dist.get_backend() if dist.is_initialized() else None}), flush=True)
acc.wait_for_everyone()
'''

# Stands in for chorus.cli under accelerate_node.sh (TRAIN_MODULE): the run's Accelerator, built by
# chorus.train.setup exactly as `chorus train` builds it.
CHORUS_NODE_PROBE = '''
import json, os
from chorus.config import load_recipe
from chorus.train.setup import make_accelerator

recipe = load_recipe(os.path.join(os.environ["CHORUS_REPO"], "recipes", "quickstart.yaml"),
                     ["train.precision=fp32"])
acc = make_accelerator(recipe)
print("PROBE " + json.dumps({"type": acc.distributed_type.value, "rank": acc.process_index,
                             "world_size": acc.num_processes}), flush=True)
acc.wait_for_everyone()
'''

# An `accelerate` that records its arguments (one per line) and exits.
ARGS_STUB = '''#!/usr/bin/env bash
printf '%s\\n' "$@" > "${ARGS_OUT:?}"
printf 'ACCELERATE_USE_CPU=%s\\n' "${ACCELERATE_USE_CPU:-}" >> "${ARGS_OUT}.env"
'''


def _probes(output: str) -> list[dict]:
    """Every ``PROBE {...}`` record in the launcher's output. Ranks print concurrently into one pipe, so
    two records can share a line (a print's text and its newline are separate writes)."""
    decoder = json.JSONDecoder()
    found, at = [], output.find("PROBE ")
    while at >= 0:
        record, end = decoder.raw_decode(output, at + len("PROBE "))
        found.append(record)
        at = output.find("PROBE ", end)
    return sorted(found, key=lambda p: p["rank"])


def _launch(args: list[str], tmp_path: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=REPO, env=child_env(OMP_NUM_THREADS="1", **env),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result


def _stub(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return path


# ---- Accelerate configs, launched ---------------------------------------------------------------

@pytest.mark.parametrize("name", DEEPSPEED_YAMLS)
def test_deepspeed_config_starts_under_accelerate_launch(name, tmp_path):
    """accelerate launch with the config reaches a DeepSpeed Accelerator (a mixed_precision key next to
    deepspeed_config_file made Accelerate raise ValueError at start-up)."""
    probe = tmp_path / "probe.py"
    probe.write_text(ACCELERATOR_PROBE)
    config = INFRA / "accelerate" / name
    result = _launch([tool("accelerate"), "launch", "--config_file", str(config), "--num_processes", "1",
                      "--main_process_port", str(free_port()), str(probe), "bf16"], tmp_path)
    (probe_out,) = _probes(result.stdout)
    ds_file = REPO / yaml.safe_load(config.read_text())["deepspeed_config"]["deepspeed_config_file"]
    stage = json.loads(ds_file.read_text())["zero_optimization"]["stage"]
    assert probe_out["type"] == "DEEPSPEED" and probe_out["zero_stage"] == stage
    # the precision is the one the program asked for (chorus: the recipe's), and DeepSpeed follows it
    assert probe_out["mixed_precision"] == "bf16" and probe_out["bf16"] is True
    # zero.Init would only reach transformers models; chorus models are partitioned by prepare()
    assert probe_out["zero3_init"] is False


def test_cpu_multi_config_starts_two_gloo_ranks(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(WORLD_PROBE)
    result = _launch([tool("accelerate"), "launch", "--config_file", str(INFRA / "accelerate" / "cpu_multi.yaml"),
                      "--main_process_port", str(free_port()), str(probe)], tmp_path, ACCELERATE_USE_CPU="1")
    probes = _probes(result.stdout)
    assert [p["rank"] for p in probes] == [0, 1], result.stdout + result.stderr[-3000:]
    assert all(p["world_size"] == 2 and p["type"] == "MULTI_CPU" and p["backend"] == "gloo" for p in probes)


# ---- the per-node script --------------------------------------------------------------------------

def _node_args(tmp_path: Path, **env: str) -> tuple[list[str], str]:
    stub = _stub(tmp_path, "accelerate", ARGS_STUB)
    out = tmp_path / "args.txt"
    result = subprocess.run(["bash", str(NODE_SCRIPT), "recipe.yaml"], cwd=REPO, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "ACCELERATE": str(stub), "ARGS_OUT": str(out), **env})
    assert result.returncode == 0, result.stderr
    return out.read_text().splitlines(), Path(f"{out}.env").read_text()


@pytest.mark.parametrize("name", DEEPSPEED_YAMLS)
def test_node_script_keeps_deepspeed_on_cpu(name, tmp_path):
    """CHORUS_CPU=1 with a DeepSpeed config: no --multi_gpu (it replaced DEEPSPEED with plain DDP)."""
    args, env = _node_args(tmp_path, CHORUS_CPU="1", PROCS_PER_NODE="2",
                           ACCELERATE_CONFIG=f"infra/accelerate/{name}")
    assert "--multi_gpu" not in args and "--cpu" not in args
    assert args[args.index("--num_processes") + 1] == "2"
    assert args[args.index("--config_file") + 1] == f"infra/accelerate/{name}"
    assert "ACCELERATE_USE_CPU=1" in env


def test_node_script_still_uses_the_multi_process_launcher_for_ddp_on_cpu(tmp_path):
    args, env = _node_args(tmp_path, CHORUS_CPU="1", PROCS_PER_NODE="2")
    assert "--multi_gpu" in args and "ACCELERATE_USE_CPU=1" in env


@pytest.mark.slow
def test_node_script_trains_deepspeed_with_two_cpu_processes(tmp_path):
    """The real launch: two processes, one DeepSpeed job of world size 2 (was MULTI_CPU = plain DDP).
    Slow the first time: DeepSpeed compiles its shared-memory comm op (~60 s on 2 cores)."""
    (tmp_path / "node_probe.py").write_text(CHORUS_NODE_PROBE)
    result = _launch(["bash", str(NODE_SCRIPT), "recipes/quickstart.yaml"], tmp_path, timeout=600,
                     CHORUS_CPU="1", PROCS_PER_NODE="2", MAIN_PROCESS_PORT=str(free_port()),
                     ACCELERATE_CONFIG="infra/accelerate/deepspeed_zero2.yaml", ACCELERATE=tool("accelerate"),
                     TRAIN_MODULE="node_probe", PYTHONPATH=str(tmp_path), CHORUS_REPO=str(REPO))
    probes = _probes(result.stdout)
    assert [p["rank"] for p in probes] == [0, 1], result.stdout[-3000:] + result.stderr[-3000:]
    assert all(p["type"] == "DEEPSPEED" and p["world_size"] == 2 for p in probes)


@pytest.mark.parametrize("variable,value", [
    ("PROCS_PER_NODE", "8x"), ("PROCS_PER_NODE", "0"), ("PROCS_PER_NODE", "-1"),
    ("NUM_MACHINES", "two"), ("NUM_MACHINES", "0"), ("NUM_MACHINES", "2.5"),
    ("MACHINE_RANK", "first"), ("MAIN_PROCESS_PORT", "http"),
])
def test_node_script_rejects_a_bad_number_by_name(variable, value, tmp_path):
    stub = _stub(tmp_path, "accelerate", ARGS_STUB)
    result = subprocess.run(["bash", str(NODE_SCRIPT), "recipe.yaml"], cwd=REPO, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "ACCELERATE": str(stub),
                                 "ARGS_OUT": str(tmp_path / "args.txt"), variable: value})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"{variable}='{value}' must be"), result.stderr
    assert "unbound variable" not in result.stderr
    assert not (tmp_path / "args.txt").exists(), "accelerate was started anyway"


def test_node_script_accepts_leading_zeros_as_decimal(tmp_path):
    args, _ = _node_args(tmp_path, NUM_MACHINES="02", MACHINE_RANK="01", PROCS_PER_NODE="08")
    assert args[args.index("--num_processes") + 1] == "16"
    assert args[args.index("--machine_rank") + 1] == "1"


# ---- restarts resume: Kubernetes and Slurm --------------------------------------------------------

def _train_overrides(args: list[str]) -> tuple[str, list[str]]:
    """The recipe and overrides `chorus train` receives from an accelerate command line."""
    rest = args[args.index("train") + 1:]
    return rest[0], rest[1:]


def _resume_point(recipe_path: str, overrides: list[str], run_dir: Path):
    """Where chorus train would start, with a checkpoint already in ``run_dir`` (a restarted job)."""
    from chorus.config import load_recipe
    from chorus.train import rundir

    ckpt = run_dir / "checkpoints" / "step_000000007"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"epoch": 0, "batch": 7}))
    return rundir.resolve(load_recipe(str(REPO / recipe_path), overrides))


def test_pytorchjob_pod_restart_resumes_from_its_checkpoint(tmp_path):
    (job,) = yaml.safe_load_all((INFRA / "k8s" / "pytorchjob-train.yaml").read_text())
    container = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    stub = _stub(tmp_path, "accelerate", ARGS_STUB)
    out = tmp_path / "args.txt"
    result = subprocess.run(
        [*container["command"], container["args"][0]], cwd=REPO, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", **env, "ACCELERATE": str(stub), "ARGS_OUT": str(out),
             "PET_NNODES": "4", "PET_NODE_RANK": "2", "PET_NPROC_PER_NODE": "8",
             "MASTER_ADDR": "chorus-train-master-0", "MASTER_PORT": "23456"})
    assert result.returncode == 0, result.stderr
    args = out.read_text().splitlines()
    assert args[args.index("--num_processes") + 1] == "32"
    recipe, overrides = _train_overrides(args)
    assert recipe == env["RECIPE"]
    (out_dir,) = [o.split("=", 1)[1] for o in overrides if o.startswith("train.out_dir=")]
    assert out_dir == "/data/runs/chorus-train"
    # the same overrides, with the shared volume's folder moved into tmp_path
    local = [o if not o.startswith("train.out_dir=") else f"train.out_dir={tmp_path / 'run'}" for o in overrides]
    run_dir, resume_from = _resume_point(recipe, local, tmp_path / "run")
    assert run_dir == str(tmp_path / "run") and resume_from.endswith("step_000000007")


SRUN_STUB = '''#!/usr/bin/env bash
# srun: skip the options, run the command once as node 0
while [[ "$1" == -* ]]; do shift; done
SLURM_NODEID=0 exec "$@"
'''

SCONTROL_STUB = '''#!/usr/bin/env bash
[[ "$1 $2" == "show hostnames" ]] && echo node-a
'''


def _sbatch_args(tmp_path: Path, *user_args: str) -> list[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    _stub(bindir, "srun", SRUN_STUB)
    _stub(bindir, "scontrol", SCONTROL_STUB)
    stub = _stub(tmp_path, "accelerate", ARGS_STUB)
    out = tmp_path / "args.txt"
    result = subprocess.run(
        ["bash", str(INFRA / "slurm" / "train_multinode.sbatch"), "recipes/quickstart.yaml", *user_args],
        capture_output=True, text=True,
        env={"PATH": f"{bindir}:/usr/bin:/bin", "SLURM_SUBMIT_DIR": str(REPO), "SLURM_JOB_ID": "4242",
             "SLURM_JOB_NODELIST": "node-a", "SLURM_NNODES": "1", "SLURM_GPUS_ON_NODE": "1",
             "ACCELERATE": str(stub), "ARGS_OUT": str(out)})
    assert result.returncode == 0, result.stdout + result.stderr
    return out.read_text().splitlines()


def test_slurm_requeued_job_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    args = _sbatch_args(tmp_path, "data.batch_size=16")
    recipe, overrides = _train_overrides(args)
    assert recipe == "recipes/quickstart.yaml" and "data.batch_size=16" in overrides
    monkeypatch.chdir(tmp_path)                      # runs/... is relative to the submit folder
    run_dir, resume_from = _resume_point(recipe, overrides, tmp_path / "runs" / "quickstart-slurm-4242")
    assert run_dir == str(tmp_path / "runs" / "quickstart-slurm-4242")
    assert resume_from.endswith("step_000000007")


def test_slurm_user_run_folder_and_resume_mode_win(tmp_path, monkeypatch):
    from chorus.config import RecipeError

    args = _sbatch_args(tmp_path, f"train.out_dir={tmp_path / 'mine'}", "train.resume=never")
    recipe, overrides = _train_overrides(args)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match="already holds checkpoints"):
        _resume_point(recipe, overrides, tmp_path / "mine")


# ---- packaging ----------------------------------------------------------------------------------

def test_wheel_ships_the_c_kernel(tmp_path):
    """A built (non-editable) wheel carries lif_kernel.c where cpu_kernel.py looks for it."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "platform", src / "platform",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("chorus_snn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "chorus/neurons/lif_kernel.c" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    found = subprocess.run(
        [sys.executable, "-c", "import chorus.neurons.cpu_kernel as k; print(k.__file__); print(k._SRC.is_file())"],
        env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path, capture_output=True, text=True, check=True)
    where, exists = found.stdout.split()
    assert where.startswith(str(target)) and exists == "True"


# ---- Ray --------------------------------------------------------------------------------------

def test_ray_wait_nodes_gives_up_on_an_unreachable_head_within_its_timeout(tmp_path):
    port = free_port()                               # nothing listens there now
    start = time.monotonic()
    result = subprocess.run([sys.executable, str(INFRA / "launch" / "ray_wait_nodes.py"),
                             "--address", f"127.0.0.1:{port}", "--nodes", "1", "--timeout", "2"],
                            capture_output=True, text=True, timeout=60,
                            env=child_env(RAY_TMPDIR=str(tmp_path)))
    took = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    assert "did not accept a connection within 2 s" in result.stderr
    assert took < 15, f"took {took:.1f} s for a 2 s timeout"


# ---- container and docs ---------------------------------------------------------------------------

def test_container_installs_ray_with_the_dashboard_agent():
    """KubeRay job submission and probes talk to the dashboard/agent, which only ray[default] brings."""
    dockerfile = pytest.importorskip("dockerfile", reason="pip install dockerfile (BuildKit's parser)")
    runs = [c for c in dockerfile.parse_file(str(INFRA / "container" / "Dockerfile")) if c.cmd == "RUN"]
    import shlex
    words = [w for c in runs for w in shlex.split(" ".join(c.value))]
    (ray,) = [w for w in words if w.startswith("ray[") or w.startswith("ray==") or w == "ray"]
    from packaging.requirements import Requirement
    req = Requirement(ray)
    assert {"default", "tune", "train"} <= req.extras and str(req.specifier) == "==2.60.0"


def test_documented_mlflow_allowed_hosts_accept_the_clients_host_header():
    import re
    import shlex

    from mlflow.server.security_utils import is_allowed_host_header

    text = (REPO / "docs" / "scaling.md").read_text()
    (value,) = re.findall(r"--allowed-hosts (\S+)", text)
    patterns = shlex.split(value)[0].split(",")
    for host in ("mlflow.example.org:5000", "mlflow.example.org", "10.1.2.3:5000"):
        assert is_allowed_host_header(patterns, host), (patterns, host)
    assert "replaces" in text and "defaults" in text
