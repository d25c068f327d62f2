"""infra/ Accelerate and DeepSpeed configs load with the loaders that will read them in production.

- every YAML/JSON file in infra/ parses;
- every Accelerate config loads with accelerate's own config loader, and the per-node launcher's
  flags override it the way accelerate launch resolves them;
- every DeepSpeed JSON, with its ``auto`` fields filled the way Accelerate fills them before it calls
  ``deepspeed.initialize``, is accepted by DeepSpeed's config loader.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"

YAML_FILES = sorted(INFRA.rglob("*.yaml"))
JSON_FILES = sorted(INFRA.rglob("*.json"))
ACCELERATE_CONFIGS = sorted((INFRA / "accelerate").glob("*.yaml"))
DEEPSPEED_CONFIGS = sorted((INFRA / "deepspeed").glob("*.json"))

# what each Accelerate config promises: (distributed type, processes, machines, mixed precision)
# The DeepSpeed configs set no mixed_precision: next to deepspeed_config_file Accelerate refuses it at
# start-up; chorus train takes the precision from the recipe.
EXPECTED_ACCELERATE = {
    "cpu_single.yaml": ("NO", 1, 1, "no"),
    "gpu_single.yaml": ("NO", 1, 1, "bf16"),
    "gpu_node8.yaml": ("MULTI_GPU", 8, 1, "bf16"),
    "multi_node.yaml": ("MULTI_GPU", 16, 2, "bf16"),
    "deepspeed_zero1.yaml": ("DEEPSPEED", 8, 1, "no"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 8, 1, "no"),
    "deepspeed_zero3_offload.yaml": ("DEEPSPEED", 8, 1, "no"),
}


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_infra_has_the_promised_files():
    names = {p.name for p in ACCELERATE_CONFIGS}
    assert set(EXPECTED_ACCELERATE) <= names
    assert {"zero1.json", "zero2.json", "zero3_offload.json"} <= {p.name for p in DEEPSPEED_CONFIGS}


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", JSON_FILES, ids=_rel)
def test_json_parses(path):
    assert isinstance(json.loads(path.read_text()), dict)


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=_rel)
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))     # raises on unknown keys and bad enum values
    expected = EXPECTED_ACCELERATE.get(path.name)
    if expected is None:
        return                                    # a config owned elsewhere (cpu_multi.yaml)
    dist, procs, machines, precision = expected
    assert config.distributed_type.value == dist
    assert config.num_processes == procs
    assert config.num_machines == machines
    assert (config.mixed_precision or "no") == precision
    assert path.read_text().lstrip().startswith("#"), "each config starts with a comment saying what it is for"
    if dist == "DEEPSPEED":
        ds_file = REPO / config.deepspeed_config["deepspeed_config_file"]
        assert ds_file.is_file(), f"{path.name} points at a missing {ds_file}"
        assert config.deepspeed_config["deepspeed_multinode_launcher"] == "standard"


def test_multi_node_flags_override_the_config():
    """The flags infra/launch/accelerate_node.sh passes win over the placeholders in the config."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser = launch_command_parser()
    args = parser.parse_args([
        "--config_file", str(INFRA / "accelerate" / "multi_node.yaml"),
        "--num_machines", "4", "--machine_rank", "3",
        "--main_process_ip", "10.1.2.3", "--main_process_port", "29999",
        "--num_processes", "32", "--same_network", "--dynamo_backend", "no",
        "-m", "chorus.cli", "train", "recipe.yaml",
    ])
    args, _, _ = _validate_launch_command(args)
    assert args.multi_gpu and not args.use_deepspeed
    assert (args.num_machines, args.machine_rank, args.num_processes) == (4, 3, 32)
    assert (args.main_process_ip, args.main_process_port) == ("10.1.2.3", 29999)
    assert args.mixed_precision == "bf16"
    assert args.same_network and args.rdzv_backend == "static"


def _fill_like_accelerate(path: Path, *, precision: str, micro_batch: int, grad_accum: int,
                          num_processes: int, grad_clip: float = 1.0):
    """The steps Accelerate takes on a DeepSpeed config file before ``deepspeed.initialize``.

    DeepSpeedPlugin reads the file; Accelerator sets the precision (fills ``bf16.enabled``), then
    ``_prepare_deepspeed`` fills the accumulation steps, the batch sizes from the dataloader, the
    clipping and, for ZeRO-3, the bucket sizes only if ``model.config.hidden_size`` exists (Chorus
    models have no ``config``, so those must not be ``auto``). A torch optimizer (what the training
    loop passes) sets ``zero_allow_untested_optimizer``.
    """
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(hf_ds_config=str(path))
    plugin.set_mixed_precision(precision)
    plugin.fill_match("gradient_accumulation_steps", must_match=False,
                      gradient_accumulation_steps=grad_accum)
    hidden_size_keys = [
        "zero_optimization.reduce_bucket_size",
        "zero_optimization.stage3_prefetch_bucket_size",
        "zero_optimization.stage3_param_persistence_threshold",
    ]
    auto_hidden = [k for k in hidden_size_keys if plugin.is_auto(k)]
    assert not auto_hidden, f"{path.name}: Accelerate cannot fill {auto_hidden} for models without config.hidden_size"
    kwargs = {
        "gradient_clipping": grad_clip,
        "zero_optimization.stage3_gather_16bit_weights_on_model_save": False,
        "train_micro_batch_size_per_gpu": micro_batch,
        "train_batch_size": micro_batch * plugin.get_value("gradient_accumulation_steps") * num_processes,
    }
    plugin.deepspeed_config["zero_allow_untested_optimizer"] = True
    plugin.deepspeed_config_process(must_match=False, **kwargs)
    return plugin.deepspeed_config


def _autos(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _autos(value, f"{prefix}{key}.")
    elif node == "auto":
        yield prefix.rstrip(".")


@pytest.mark.parametrize("path", DEEPSPEED_CONFIGS, ids=_rel)
def test_deepspeed_config_accepted_after_accelerate_fills_auto(path):
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = json.loads(path.read_text())
    stage = raw["zero_optimization"]["stage"]
    config = _fill_like_accelerate(path, precision="bf16", micro_batch=8, grad_accum=2, num_processes=1)
    assert list(_autos(config)) == [], "Accelerate left 'auto' values unfilled"

    ds = DeepSpeedConfig(config)           # DeepSpeed's own loader: validates every section
    assert ds.zero_optimization_stage == stage
    assert ds.bfloat16_config.enabled, f"{path.name} is meant for bf16"
    assert ds.train_micro_batch_size_per_gpu == 8
    assert ds.gradient_accumulation_steps == 2
    assert ds.train_batch_size == 16
    assert ds.gradient_clipping == 1.0
    if path.name == "zero3_offload.json":
        assert stage == 3
        assert ds.zero_config.offload_optimizer.device == "cpu"
        assert ds.zero_config.offload_param.device == "cpu"
        # chorus checkpoints call accelerator.get_state_dict, which under ZeRO-3 needs the gather
        assert ds.zero_config.gather_16bit_weights_on_model_save is True


def test_deepspeed_config_rejects_a_broken_file(tmp_path):
    """The loader used above does reject a wrong config (so the test above can fail)."""
    from deepspeed.runtime.config import DeepSpeedConfig

    bad = json.loads((INFRA / "deepspeed" / "zero3_offload.json").read_text())
    bad["zero_optimization"]["offload_param"]["device"] = "gpu-ram"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    config = _fill_like_accelerate(path, precision="bf16", micro_batch=8, grad_accum=2, num_processes=1)
    with pytest.raises(Exception):
        DeepSpeedConfig(config)


@pytest.mark.parametrize("path", DEEPSPEED_CONFIGS, ids=_rel)
def test_deepspeed_config_accepted_as_chorus_train_builds_it(path, tmp_path):
    """The path `chorus train` takes: the recipe fills the JSON (chorus.train.setup), Accelerate's
    plugin reads it and fills what is left, DeepSpeed's loader accepts the result."""
    from deepspeed.runtime.config import DeepSpeedConfig

    from chorus.config import load_recipe
    from chorus.train.setup import deepspeed_config

    recipe = load_recipe(str(REPO / "recipes" / "quickstart.yaml"), [
        f"train.deepspeed={path}", "train.precision=bf16", "train.grad_accum=2", "train.grad_clip=1.0",
        "data.batch_size=8"])
    filled = tmp_path / path.name
    filled.write_text(json.dumps(deepspeed_config(recipe, world_size=1)))
    config = _fill_like_accelerate(filled, precision="bf16", micro_batch=8, grad_accum=2, num_processes=1)
    assert list(_autos(config)) == []
    ds = DeepSpeedConfig(config)
    assert ds.bfloat16_config.enabled
    assert (ds.train_micro_batch_size_per_gpu, ds.gradient_accumulation_steps, ds.train_batch_size) == (8, 2, 16)
    assert ds.zero_optimization_stage == json.loads(path.read_text())["zero_optimization"]["stage"]
