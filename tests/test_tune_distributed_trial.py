"""Distributed trials (resources.workers > 1, Ray Train V2): PBT is refused while the search recipe
is read (it cannot clone a Ray Train trial), and the inner TorchTrainer keeps a bounded number of
checkpoints. No Ray cluster is started."""
import textwrap
import types

import pytest

from chorus.tune import SearchRecipeError, load_search
from chorus.tune import trainable


def _write(tmp_path, scheduler, workers):
    (tmp_path / "base.yaml").write_text("name: base\ndata: {shards: shards}\ntrain: {epochs: 3}\n")
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent(f"""
        base: base.yaml
        space:
          optim.lr: loguniform [0.001, 0.1]
        scheduler: {scheduler}
        resources: {{cpus: 1, workers: {workers}}}
        storage_path: {tmp_path / 'storage'}
        tracking: {{enabled: false}}
    """))
    return str(path)


def test_pbt_with_several_workers_is_refused_naming_keys_and_file(tmp_path):
    with pytest.raises(SearchRecipeError, match=r"'scheduler.type' pbt with 'resources.workers' 2 in .*search.yaml"):
        load_search(_write(tmp_path, "{type: pbt}", 2))
    load_search(_write(tmp_path, "{type: pbt}", 1))
    load_search(_write(tmp_path, "{type: asha}", 2))


def test_distributed_trial_bounds_ray_train_checkpoints(tmp_path, monkeypatch):
    import ray.train
    import ray.train.torch
    import ray.tune
    from ray.train import CheckpointConfig

    made = {}

    class FakeTrainer:
        def __init__(self, fn, **kw):
            made.update(kw)

        def fit(self):
            made["fit"] = True

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", FakeTrainer)
    import ray.tune.integration.ray_train as rtr

    from ray.train import UserCallback

    monkeypatch.setattr(rtr, "TuneReportCallback", UserCallback)   # the real one needs a live Tune session
    monkeypatch.setattr(ray.tune, "get_context", lambda: types.SimpleNamespace(get_trial_id=lambda: "t0"))
    ctx = {"keys": ["optim.lr"], "cpus": 1, "gpus": 0, "workers": 2, "train_storage": str(tmp_path),
           "exp_dir": str(tmp_path), "checkpoint_keep": 3}
    trainable.run_distributed_trial({"optim.lr": 0.01}, ctx)
    assert made["fit"]
    cc = made["run_config"].checkpoint_config
    assert isinstance(cc, CheckpointConfig) and cc.num_to_keep == 3     # Ray's default None keeps all
