"""The recipe schema: one dataclass per section (DESIGN.md, "Recipes and runs").

A recipe is plain data. Field types are checked on load by :mod:`chorus.config.validate`; ``Literal``
fields list the allowed values. Defaults follow DESIGN.md (neuron) and PAPER.md (TASG temperature 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union


@dataclass
class ModelConfig:
    """``chorus.models.create(name, num_classes, in_shape, neuron=..., **args)``."""

    name: str = "quickstart_vgg"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class NeuronConfig:
    """``LIF`` keyword arguments for every spiking layer of the model."""

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: Optional[float] = 0.0          # null = soft reset
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: Literal["sigmoid", "atan", "rect"] = "sigmoid"
    surrogate_alpha: Optional[float] = None
    mps: bool = True
    alpha_init: float = 0.5
    v_init: Literal["zero", "uniform"] = "zero"


@dataclass
class LossConfig:
    """``L = CE(mean_t o_t, y) + gamma·TASG`` (``ce: tet`` uses the per-timestep CE instead)."""

    gamma: float = 1.0
    temperature: float = 2.0
    p_drop: float = 0.0
    ce: Literal["mean", "tet"] = "mean"
    label_smoothing: float = 0.0


@dataclass
class DataConfig:
    """Shard folder or URL (``s3://``, ``gs://``, ``https://``, ``file://``) and the reader's
    settings (``chorus.data.make_loader``)."""

    shards: str = ""
    T: int = 4
    size: Optional[int] = None
    batch_size: int = 32                    # per process
    eval_batch_size: Optional[int] = None   # default: batch_size
    workers: int = 0
    worker_kind: Literal["threads", "processes"] = "threads"   # what the workers are
    augment: Union[bool, str, dict, None] = None
    on_error: Literal["raise", "skip"] = "raise"
    cache_dir: Optional[str] = None         # node-local cache of remote shards (default ~/.cache/chorus/shards)
    cache_gb: float = 20.0                  # its bound; 0 = no cache (every epoch downloads again)
    retries: int = 3                        # extra tries of a failed download


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class ScheduleConfig:
    """Learning-rate schedule per optimizer step; ``step_size`` and warm-up are in epochs."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 30
    gamma: float = 0.1
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: Optional[int] = None         # stop after this many optimizer steps (smoke runs)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_accum: int = 1
    grad_clip: Optional[float] = None
    seed: int = 0
    deterministic: bool = True
    deepspeed: Optional[str] = None         # a DeepSpeed JSON, e.g. infra/deepspeed/zero2.json
    checkpoint_every: int = 0               # optimizer steps; 0 = at epoch end only
    keep_last: int = 2
    out_dir: Optional[str] = None           # default runs/{name}-{timestamp}
    resume: str = "never"                   # never | auto | PATH of a checkpoint or run folder
    log_every: int = 10                     # optimizer steps between train/* metrics
    eval_test: bool = True
    progress: bool = True


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None               # default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db
    experiment: str = "chorus"
    run_name: Optional[str] = None          # default: the recipe name
    parent_run_id: Optional[str] = None     # nest this run under another (chorus tune)
    tags: dict[str, str] = field(default_factory=dict)
    log_checkpoint: bool = True             # the best checkpoint as artifacts


@dataclass
class DiagnosticsConfig:
    every: int = 0                          # epochs; 0 = off
    samples: int = 256
    layers: Optional[list[str]] = None


@dataclass
class Recipe:
    name: str = "run"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    source: Optional[str] = field(default=None, metadata={"internal": True})  # the file it came from
