"""Accelerate set-up for one run: process group, DeepSpeed ZeRO plugin, determinism.

CPU runs use gloo (``accelerate launch`` with ``ACCELERATE_USE_CPU=1``), GPU runs NCCL. A recipe that
names a DeepSpeed JSON (``infra/deepspeed/zero{1,2}.json``) trains through Accelerate's DeepSpeed
plugin; the recipe is authoritative for what the loop controls (micro-batch, accumulation, clipping,
precision), so those keys of the JSON are filled from it.
"""
from __future__ import annotations

import json
import os

import torch

from chorus.config import Recipe, RecipeError


def world_size_hint() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def deepspeed_path(recipe: Recipe) -> str | None:
    """``train.deepspeed``, else the JSON named by an ``accelerate launch`` DeepSpeed config
    (infra/accelerate/deepspeed_zero*.yaml set ACCELERATE_DEEPSPEED_CONFIG_FILE)."""
    if recipe.train.deepspeed:
        return recipe.train.deepspeed
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        from chorus.config import paths

        # written relative to the repository root in infra/accelerate/*.yaml; Accelerate passes it verbatim
        return paths.resolve(os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE") or None, None, os.path.isfile)
    return None


def _missing_deepspeed(recipe: Recipe, path: str) -> RecipeError:
    """The error for a DeepSpeed JSON that is not there, naming where the path came from."""
    from chorus.config import paths

    if recipe.train.deepspeed:
        return RecipeError(f"train.deepspeed: file {path!r} does not exist "
                           f"({paths.set_in(recipe.source, 'train', 'deepspeed', path)}; {paths.tried(path, recipe.source)})")
    return RecipeError(f"deepspeed_config_file {path!r} of the `accelerate launch` config (passed as "
                       f"ACCELERATE_DEEPSPEED_CONFIG_FILE) does not exist ({paths.tried(path)})")


def deepspeed_config(recipe: Recipe, world_size: int) -> dict:
    path = deepspeed_path(recipe)
    where = f" in {recipe.source}" if recipe.source else ""
    if not os.path.isfile(path):
        raise _missing_deepspeed(recipe, path)
    try:
        with open(path) as f:
            cfg = json.load(f)
    except json.JSONDecodeError as e:
        raise RecipeError(f"train.deepspeed: {path!r} is not valid JSON ({e}){where}") from None
    t, d = recipe.train, recipe.data
    cfg["train_micro_batch_size_per_gpu"] = d.batch_size
    cfg["gradient_accumulation_steps"] = t.grad_accum
    cfg["train_batch_size"] = d.batch_size * t.grad_accum * world_size
    cfg["gradient_clipping"] = float(t.grad_clip or 0.0)
    cfg["bf16"] = {"enabled": t.precision == "bf16"}
    cfg["fp16"] = {"enabled": t.precision == "fp16", **({"initial_scale_power": 16} if t.precision == "fp16" else {})}
    cfg.setdefault("zero_allow_untested_optimizer", True)   # our torch SGD/AdamW as client optimizer
    offload = ((cfg.get("zero_optimization") or {}).get("offload_optimizer") or {}).get("device", "none")
    if offload not in (None, "none") and recipe.optim.name == "sgd":
        # With optimizer offload Accelerate swaps the client optimizer for DeepSpeedCPUAdam (Adam, not SGD)
        # unless zero_force_ds_cpu_optimizer is false; DeepSpeed then steps our torch SGD on the CPU.
        if cfg.get("zero_force_ds_cpu_optimizer", False) is not False:
            raise RecipeError(f"optim.name=sgd with zero_optimization.offload_optimizer.device={offload!r} and "
                              f"zero_force_ds_cpu_optimizer=true in train.deepspeed {path!r} would train with "
                              f"DeepSpeedCPUAdam, not SGD: remove zero_force_ds_cpu_optimizer (or set it false), "
                              f"or use optim.name=adamw{where}")
        cfg["zero_force_ds_cpu_optimizer"] = False
    return cfg


def make_accelerator(recipe: Recipe):
    """The run's ``Accelerator`` (after ``set_seed`` and, with ``train.deterministic``, deterministic
    algorithms: :func:`deterministic`). Its ``mixed_precision`` is always ``"no"``: the precision is
    the run's own (:mod:`chorus.train.precision`), so Accelerate's process-wide state is the same for
    every in-process run and never needs resetting."""
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin, InitProcessGroupKwargs, set_seed

    t = recipe.train
    cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")
    if t.precision == "fp16" and not cuda:
        raise RecipeError.at("train.precision", "fp16 needs a CUDA GPU (on CPU it would be silently ignored); "
                             "use bf16 or fp32", recipe.source)
    # only when launched with several processes: a backend in a single process asks for a process group
    handlers = [InitProcessGroupKwargs(backend="nccl" if cuda else "gloo")] if world_size_hint() > 1 else []
    plugin = None
    if deepspeed_path(recipe):
        from accelerate.utils import DeepSpeedPlugin

        plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(recipe, world_size_hint()))
        # Accelerate ignores DeepSpeed when told "CPU" (ACCELERATE_USE_CPU, set for gloo launches);
        # DeepSpeed brings its own CPU accelerator, and the gloo backend comes from the handler above.
        os.environ.pop("ACCELERATE_USE_CPU", None)
    if t.deterministic and cuda:
        # cuBLAS reads this when its first handle is made: before any CUDA matmul of this process
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # the plugin is always given: it updates the process-wide accumulation count left by an earlier run
    acc = Accelerator(mixed_precision="no", deepspeed_plugin=plugin, kwargs_handlers=handlers,
                      gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=t.grad_accum))
    if plugin is not None and not uses_deepspeed(acc):
        raise RecipeError.at("train.deepspeed", "this process already trained without DeepSpeed (Accelerate keeps "
                             "that for the process); run the DeepSpeed recipe in its own process", recipe.source)
    if acc.num_processes > 1:
        from chorus.train import process_group

        process_group.register()     # destroyed at exit, before the interpreter's finalization
    set_seed(t.seed)
    if acc.device.type == "cpu":
        cpu_threads(acc)
    if t.deterministic:
        deterministic(acc.device.type)
    return acc


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream: ``seed`` itself on rank 0 (a one-process run and rank
    0 of a launch draw the same), a seed derived from ``(seed, rank)`` on the others (never ``seed`` of
    another run: not ``seed + rank``)."""
    if rank == 0:
        return int(seed)
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, dtype=np.uint32)[0])


def seed_rank(seed: int, rank: int) -> None:
    """After the model is built and prepared (the same initial weights on every rank), give each rank
    its own stream for what must differ between ranks: V(0) noise (``neuron.v_init: uniform``), dropout
    and TASG's timestep drop. The data order and augmentation draws do not read these streams: they
    come from (seed, epoch, shard, sample) in the reader, global and exact for any number of ranks.
    A resume then restores each rank's saved stream (Accelerate's ``random_states_{rank}.pkl``)."""
    from accelerate.utils import set_seed

    if rank:
        set_seed(rank_seed(seed, rank))


def deterministic(device_type: str) -> None:
    """``train.deterministic``: deterministic torch kernels (a warning, not an error, where an op has
    none) and, on CUDA, deterministic cuDNN without autotuning and a fixed cuBLAS workspace."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device_type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def cpu_threads(acc) -> int:
    """Torch threads per CPU process when OMP_NUM_THREADS is not set: this process's share of the cores
    minus one left to the data reader's threads (at least one). OpenMP threads that compete with the
    reader, or with other processes, spin at their barriers: on 2 shared cores 2 torch threads trained
    the quickstart 3-10x slower than 1 (README, "Training")."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", acc.num_processes if acc.num_processes > 1 else 1))
    n = threads_per_process(local)
    torch.set_num_threads(n)
    return n


def threads_per_process(local_processes: int = 1, cores: int | None = None) -> int:
    """The policy of :func:`cpu_threads`: this machine's (affinity) cores shared by ``local_processes``,
    minus one for the data reader, at least one."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
    return max(1, cores // max(1, local_processes) - 1)


def release(acc) -> None:
    """Drop the Accelerator's references to the run's model, optimizer and engine (``free_memory``);
    a later ``run`` in this process makes its own Accelerator with the same process-wide state."""
    acc.free_memory()


def uses_deepspeed(acc) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.DEEPSPEED


def sync_buffers(model) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank: each rank's last forward
    updated them from its own batch, and evaluation and checkpoints must see one model."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for b in model.buffers():
            dist.broadcast(b.data, src=0)


def model_dtype(model) -> torch.dtype:
    """DeepSpeed bf16/fp16 casts the model; inputs must follow."""
    for p in model.parameters():
        return p.dtype
    return torch.float32
