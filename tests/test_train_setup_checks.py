"""Train set-up: DeepSpeed optimizer offload keeps the recipe's SGD (Accelerate would swap in
DeepSpeedCPUAdam), determinism flags per device, and the CPU thread policy shared with bench/train.py."""
import json
import os

import pytest
import torch

from chorus.config import RecipeError, load_recipe
from chorus.train import setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
OFFLOAD = os.path.join(ROOT, "infra", "deepspeed", "zero3_offload.json")


def _accelerate_swaps_optimizer(cfg: dict) -> bool:
    """Accelerate 1.x's own test (accelerator.py, _prepare_deepspeed) for map_pytorch_optim_to_deepspeed."""
    import inspect

    import accelerate.accelerator as aa

    src = inspect.getsource(aa.Accelerator._prepare_deepspeed)
    assert 'get("zero_force_ds_cpu_optimizer", True)' in src and "map_pytorch_optim_to_deepspeed" in src
    return (cfg["zero_optimization"].get("offload_optimizer", {}).get("device", "none") != "none"
            and cfg.get("zero_force_ds_cpu_optimizer", True))


def test_offload_with_sgd_keeps_the_torch_optimizer():
    with open(OFFLOAD) as f:
        raw = json.load(f)
    assert _accelerate_swaps_optimizer(raw)                        # the shipped file alone: SGD -> CPUAdam
    cfg = setup.deepspeed_config(load_recipe(QUICKSTART, [f"train.deepspeed={OFFLOAD}", "optim.name=sgd"]), 2)
    assert not _accelerate_swaps_optimizer(cfg) and cfg["zero_force_ds_cpu_optimizer"] is False
    from deepspeed.runtime.config import get_zero_force_ds_cpu_optimizer   # DeepSpeed 0.19's reading
    assert get_zero_force_ds_cpu_optimizer(raw) is True and get_zero_force_ds_cpu_optimizer(cfg) is False
    adam = setup.deepspeed_config(load_recipe(QUICKSTART, [f"train.deepspeed={OFFLOAD}", "optim.name=adamw"]), 2)
    assert "zero_force_ds_cpu_optimizer" not in adam                # AdamW -> DeepSpeedCPUAdam(adamw_mode)


def test_offload_with_sgd_and_forced_cpu_optimizer_is_refused(tmp_path):
    with open(OFFLOAD) as f:
        raw = json.load(f)
    raw["zero_force_ds_cpu_optimizer"] = True
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RecipeError, match=r"optim.name=sgd .*offload_optimizer.*zero_force_ds_cpu_optimizer"):
        setup.deepspeed_config(load_recipe(QUICKSTART, [f"train.deepspeed={path}", "optim.name=sgd"]), 2)


@pytest.fixture
def restore_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def test_deterministic_on_cpu_sets_torch_only(restore_flags):
    acc = setup.make_accelerator(load_recipe(QUICKSTART, ["train.deterministic=true"]))
    try:
        assert acc.device.type == "cpu"
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic is False and torch.backends.cudnn.benchmark is True
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    finally:
        setup.release(acc)


def test_deterministic_on_cuda_sets_cudnn_and_cublas(restore_flags):
    setup.deterministic("cuda")
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic is True and torch.backends.cudnn.benchmark is False
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"          # a value PyTorch's docs name


def test_thread_policy_is_the_same_for_bench_and_loop():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_train", os.path.join(ROOT, "bench", "train.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cores = len(os.sched_getaffinity(0))
    assert bench.thread_policy(1) == max(1, cores - 1)                  # by hand: cores minus the reader's
    assert bench.thread_policy(2) == max(1, cores // 2 - 1)
    assert setup.threads_per_process(2, cores=16) == 7 and setup.threads_per_process(4, cores=2) == 1
