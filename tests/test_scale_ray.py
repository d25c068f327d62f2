"""A real Ray cluster on one host: a head and a worker started with ``ray start``, on loopback.

The two nodes are made to look like two machines: both run in a private network namespace that has
only a loopback interface (when the machine allows it), and each in its own UTS namespace with its
own host name, ``chorus-head`` and ``chorus-worker``, which every task and trial reports back. The
cluster is started once for this module and stopped (every process of both sessions) at its end.

- a Ray job (a driver that joins with ``ray.init(address=...)``) runs tasks on both nodes;
- ``chorus tune --address`` runs a small search on the cluster, one trial on each node.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_infra_support import (REPO, NetNamespace, Service, child_env, free_port, small_shards,
                                tool)

pytestmark = pytest.mark.slow

HOSTNAMES = ("chorus-head", "chorus-worker")

RAY_JOB = '''
import json, socket, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=1)
def square(x):
    return socket.gethostname(), ray.get_runtime_context().get_node_id(), x * x

nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
pinned = [square.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(i)
          for i, node in enumerate(nodes)]
spread = [square.options(scheduling_strategy="SPREAD").remote(i) for i in range(8)]
print(json.dumps({"nodes": nodes, "pinned": ray.get(pinned), "spread": ray.get(spread),
                  "cpus": ray.cluster_resources().get("CPU")}))
'''


def _uts_namespaces() -> bool:
    """Whether this machine lets us give a process its own host name (root, unshare)."""
    try:
        return subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


UTS = _uts_namespaces()


def _as_host(name: str, args: list[str]) -> list[str]:
    """``args`` in a new UTS namespace whose host name is ``name`` (when unshare can make one)."""
    if not UTS:
        return args
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name, *args]


@pytest.fixture(scope="module")
def ray_cluster():
    ns = NetNamespace()
    port = 6379 if ns.active else free_port()       # a private namespace has all ports free
    address = f"127.0.0.1:{port}"
    temp_dir = tempfile.mkdtemp(prefix="cr-", dir="/tmp")   # Ray's socket paths must stay short
    logs = Path(temp_dir)
    ray = tool("ray")
    env = child_env()
    services = []
    start = time.monotonic()
    try:
        services.append(Service(ns.wrap(_as_host(HOSTNAMES[0], [
            ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={temp_dir}",
            "--disable-usage-stats"])), logs / "head.log", env=env))
        _wait_nodes(ns, address, 1, services)
        services.append(Service(ns.wrap(_as_host(HOSTNAMES[1], [
            ray, "start", "--block", f"--address={address}", "--node-ip-address=127.0.0.1",
            "--num-cpus=1"])), logs / "worker.log", env=env))
        _wait_nodes(ns, address, 2, services)
        print(f"ray head + worker up in {time.monotonic() - start:.1f} s")
        yield {"ns": ns, "address": address, "env": env, "tmp": logs}
    finally:
        for svc in reversed(services):
            svc.stop(grace=5)
        ns.delete()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_nodes(ns, address, count, services):
    """infra/launch/ray_wait_nodes.py, the helper the Slurm script uses, inside the namespace."""
    result = subprocess.run(
        ns.wrap([tool("python"), str(REPO / "infra/launch/ray_wait_nodes.py"), "--address", address,
                 "--nodes", str(count), "--timeout", "180"]),
        env=child_env(), capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        pytest.fail(result.stdout + result.stderr + "\n".join(s.output()[-2000:] for s in services))
    assert f"{count} nodes, {count} CPUs" in result.stdout


def test_ray_job_runs_on_head_and_worker(ray_cluster):
    driver = ray_cluster["tmp"] / "job.py"
    driver.write_text(RAY_JOB)
    result = subprocess.run(ray_cluster["ns"].wrap([tool("python"), str(driver), ray_cluster["address"]]),
                            env=ray_cluster["env"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(out["nodes"]) == 2 and out["cpus"] == 2
    pinned = out["pinned"]
    assert [node for _, node, _ in pinned] == out["nodes"]           # each task on the node it was sent to
    assert [value for _, _, value in pinned] == [0, 1]
    if UTS:
        assert sorted(host for host, _, _ in pinned) == list(HOSTNAMES)
    assert sorted(value for _, _, value in out["spread"]) == [i * i for i in range(8)]
    assert {node for _, node, _ in out["spread"]} <= set(out["nodes"])


def test_chorus_tune_joins_the_cluster_with_address(ray_cluster, tmp_path, tmp_path_factory):
    shards = small_shards(tmp_path_factory)
    storage = tmp_path / "tune"
    args = [tool("chorus"), "tune", "recipes/search/quickstart_gamma_alpha.yaml",
            f"fixed.data.shards={shards}", "fixed.train.epochs=1", "fixed.train.progress=false",
            "space.loss.gamma=grid [0, 1]", "space.neuron.alpha_init=grid [0.5]",
            "max_concurrent=2", "resources.cpus=1", f"storage_path={storage}",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            "--address", ray_cluster["address"]]
    start = time.monotonic()
    result = subprocess.run(ray_cluster["ns"].wrap(args), env=ray_cluster["env"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    print(f"chorus tune on the cluster took {time.monotonic() - start:.1f} s")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "2 completed, 0 stopped early, 0 failed" in output

    # Each node has one CPU and each trial asks for one: the two concurrent trials ran one per node.
    results = [json.loads(p.read_text().splitlines()[-1])
               for p in (storage / "quickstart_gamma_alpha").glob("*/result.json")]
    assert len(results) == 2
    if UTS:
        assert sorted(r["hostname"] for r in results) == list(HOSTNAMES)
    assert {r["config"]["loss.gamma"] for r in results} == {0, 1}
    assert all(0.0 <= r["val/acc"] <= 1.0 for r in results)
    assert (storage / "quickstart_gamma_alpha" / "best_recipe.yaml").is_file()
