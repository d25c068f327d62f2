"""The training recipe: one pydantic model per section, every key documented once (docs/method.md,
"Recipes and runs"). ``chorus train --help-recipe`` prints these keys with type, default and range;
``chorus train --recipe-schema`` writes them as JSON Schema. The ``neuron`` section is
:class:`chorus.models.NeuronConfig`: the neuron's own fields and rules (``chorus.neurons.LIF_FIELDS``).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator

from chorus.config.base import F, FileSpec, Section
from chorus.models.neuron_config import NeuronConfig


class ModelConfig(Section):
    name: str = F("vgg_small", "a registered model (`chorus.models.list()`); num_classes and in_shape come from the shards")
    args: dict[str, Any] = F({}, "keywords of the model's builder (width, hidden, timesteps, ...)")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from chorus.models import list as known

        if name not in known():
            raise ValueError(f"{name!r} is not a registered model; known: {', '.join(sorted(known()))}")
        return name


class LossConfig(Section):
    gamma: float = F(1.0, "TASG weight γ in CE + γ·TASG (0 = TASG off)", ge=0)
    temperature: float = F(2.0, "TASG temperature τ_kd", gt=0)
    p_drop: float = F(0.0, "probability of dropping each TASG pair term in training", ge=0, lt=1)
    ce: Literal["mean", "tet"] = F("mean", "mean: CE of the mean output; tet: the per-timestep CE of TET")
    label_smoothing: float = F(0.0, "label smoothing of the CE", ge=0, le=1)


class DataConfig(Section):
    shards: str = F(..., "the folder or URL (s3://, gs://, https://, file://) made by `chorus shard`; "
                         "credentials come from the store's own environment/profile", min_length=1)
    T: int = F(4, "timesteps: frames per sample (point clouds are repeated T times)", ge=1)
    size: Optional[int] = F(None, "frame side (events) or points per cloud; null = the sensor's / manifest's", ge=1)
    batch_size: int = F(32, "training batch per process", ge=1)
    eval_batch_size: Optional[int] = F(None, "evaluation batch per process; null = batch_size", ge=1)
    workers: int = F(0, "reader workers that decode, bin and augment (same batches whatever the number)", ge=0)
    worker_kind: Literal["threads", "processes"] = F("threads", "what the workers are: threads (the CPU default, "
                                                                 "faster here) or processes (GPU nodes); same batches")
    augment: Union[bool, str, dict, None] = F(None, "true / 'default', or a dict overriding flip, roll, rotate, "
                                                    "cutout (events) or scale, shift, jitter, dropout (points)")
    on_error: Literal["raise", "skip"] = F("raise", "a bad sample stops the run, or is left out with a warning")
    cache_dir: Optional[str] = F(None, "node-local cache of shards read from a URL, shared by the node's ranks; "
                                       "null = $CHORUS_CACHE_DIR/shards or ~/.cache/chorus/shards")
    cache_gb: float = F(20.0, "bound of that cache (least recently used shards go first); 0 = no cache, "
                              "every epoch downloads again", ge=0)
    retries: int = F(3, "extra tries of a failed download or manifest read before the error naming the URL",
                     ge=0, le=20)


class MPSGroupConfig(Section):
    """The parameter group of every MPS parameter β (α = sigmoid(β)), so that α can learn at its own pace
    (docs/method.md, "The spiking core"). The group follows the learning-rate schedule like the weights."""

    lr: Optional[float] = F(None, "base learning rate of β; null = optim.lr (PBT may perturb it)", gt=0)
    weight_decay: float = F(0.0, "weight decay of β (0: decay would pull every α towards 0.5)", ge=0)


class OptimConfig(Section):
    name: Literal["sgd", "adamw"] = F("sgd", "the optimizer")
    lr: float = F(0.1, "base learning rate (wins over a checkpoint's on resume: PBT)", gt=0)
    momentum: float = F(0.9, "SGD momentum", ge=0)
    nesterov: bool = F(False, "SGD Nesterov momentum")
    weight_decay: float = F(0.0, "decay of weights; biases, norms and MPS β are not decayed", ge=0)
    betas: list[Annotated[float, Field(ge=0, lt=1)]] = F([0.9, 0.999], "AdamW betas, two numbers in [0, 1)",
                                                         min_length=2, max_length=2)
    eps: float = F(1e-8, "AdamW epsilon", gt=0)
    mps: MPSGroupConfig = F(default_factory=MPSGroupConfig, doc="the MPS parameters' own group (β of every LIF)")


class ScheduleConfig(Section):
    name: Literal["cosine", "step", "constant"] = F("cosine", "learning-rate schedule per optimizer step")
    warmup_epochs: float = F(0.0, "linear warm-up (epochs, may be fractional)", ge=0)
    step_size: int = F(30, "step: epochs between multiplications by gamma", ge=1)
    gamma: float = F(0.1, "step: the factor every step_size epochs", gt=0)
    min_lr: float = F(0.0, "cosine: the floor", ge=0)


class TrainConfig(Section):
    epochs: int = F(10, "epochs to train", ge=1)
    max_steps: Optional[int] = F(None, "stop after this many optimizer steps (smoke runs)", ge=1)
    precision: Literal["fp32", "bf16", "fp16"] = F("fp32", "autocast precision (fp16 needs CUDA); neuron state stays fp32")
    grad_accum: int = F(1, "micro-batches per optimizer step", ge=1)
    grad_clip: Optional[float] = F(None, "clip the gradient norm to this", gt=0)
    seed: int = F(0, "seed of initialisation, data order and augmentation")
    deterministic: bool = F(True, "deterministic algorithms (and cuDNN/cuBLAS settings on CUDA)")
    deepspeed: Optional[str] = F(None, "a DeepSpeed JSON, e.g. infra/deepspeed/zero2.json")
    checkpoint_every: int = F(0, "optimizer steps between checkpoints; 0 = at epoch end only", ge=0)
    keep_last: int = F(2, "checkpoints kept besides the best", ge=1)
    out_dir: Optional[str] = F(None, "run folder (--out); null = runs/{name}-{UTC time}")
    resume: str = F("never", "never | auto (--resume) | a checkpoint or run folder")
    resume_changes: list[str] = F([], "keys (or 'section.*') that may differ from the checkpoint's recipe on "
                                      "resume, besides the safe ones (chorus.train.resume_check.SAFE)")
    log_every: int = F(10, "optimizer steps between train/* metrics", ge=1)
    eval_test: bool = F(True, "evaluate the test split at the end")
    progress: bool = F(True, "progress bar (main process)")


class TrackingConfig(Section):
    enabled: bool = F(True, "record the run in MLflow")
    uri: Optional[str] = F(None, "MLflow store; null = $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db")
    artifacts: Optional[str] = F(None, "where a new experiment keeps its artifacts (folder or URI); null = "
                                       "artifacts/ beside a sqlite database, the server's own for http(s)")
    experiment: str = F("chorus", "MLflow experiment")
    run_name: Optional[str] = F(None, "MLflow run name; null = the recipe name")
    parent_run_id: Optional[str] = F(None, "nest the run under this one (chorus tune)")
    tags: dict[str, str] = F({}, "MLflow tags")
    log_checkpoint: bool = F(True, "log the best checkpoint's weights and recipe as artifacts")


class DiagnosticsConfig(Section):
    every: int = F(0, "epochs between ensemble diagnostics (and the last); 0 = off", ge=0)
    samples: int = F(256, "validation samples they measure", ge=1)
    layers: Optional[list[str]] = F(None, "spiking layers to measure; null = all")


class Recipe(FileSpec):
    """A validated training recipe; ``source`` is the file it came from."""

    name: str = F("run", "run name (default: the file name)")
    description: str = F("", "free text")
    model: ModelConfig = F(default_factory=ModelConfig, doc="the network")
    neuron: NeuronConfig = F(default_factory=NeuronConfig, doc="LIF settings of every spiking layer")
    loss: LossConfig = F(default_factory=LossConfig, doc="CE(mean_t o_t) + γ·TASG")
    data: DataConfig = F(..., "shards and the reader")
    optim: OptimConfig = F(default_factory=OptimConfig, doc="optimizer")
    schedule: ScheduleConfig = F(default_factory=ScheduleConfig, doc="learning-rate schedule")
    train: TrainConfig = F(default_factory=TrainConfig, doc="the loop")
    tracking: TrackingConfig = F(default_factory=TrackingConfig, doc="MLflow")
    diagnostics: DiagnosticsConfig = F(default_factory=DiagnosticsConfig, doc="ensemble diagnostics")
