"""A bad scheduler value fails while the search recipe is read, naming the key and the file, and
before ``run_search`` writes a folder or opens an MLflow run (Ray would raise a bare AssertionError
after both). No Ray cluster is started here."""
import os
import textwrap

import pytest

from chorus.tune import SearchRecipeError, load_search, run_search


def _write(tmp_path, scheduler, epochs=3):
    (tmp_path / "base.yaml").write_text(f"name: base\ndata: {{shards: shards}}\ntrain: {{epochs: {epochs}}}\n")
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent(f"""
        base: base.yaml
        space:
          optim.lr: loguniform [0.001, 0.1]
        scheduler: {scheduler}
        storage_path: {tmp_path / 'storage'}
        tracking: {{enabled: false}}
    """))
    return str(path)


def _ray_scheduler(kind, **kw):
    """Ray's own scheduler with the same value (the independent check that the value is bad)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if kind == "asha":
        return ASHAScheduler(time_attr="training_iteration", **kw)
    return PopulationBasedTraining(time_attr="training_iteration",
                                   hyperparam_mutations={"optim.lr": tune.loguniform(0.001, 0.1)}, **kw)


BAD = [
    ("{type: asha, reduction_factor: 1}", "scheduler.reduction_factor", ("asha", {"reduction_factor": 1})),
    ("{type: asha, reduction_factor: 0.5}", "scheduler.reduction_factor", ("asha", {"reduction_factor": 0.5})),
    ("{type: asha, grace_period: 4, max_t: 2}", "scheduler.grace_period", ("asha", {"grace_period": 4, "max_t": 2})),
    ("{type: asha, max_t: 0}", "scheduler.max_t", ("asha", {"max_t": 0})),
    ("{type: pbt, quantile_fraction: 0.6}", "scheduler.quantile_fraction", ("pbt", {"quantile_fraction": 0.6})),
    ("{type: pbt, quantile_fraction: -0.1}", "scheduler.quantile_fraction", ("pbt", {"quantile_fraction": -0.1})),
]


@pytest.mark.parametrize("scheduler, key, ray_kw", BAD)
def test_bad_scheduler_value_names_key_and_file(tmp_path, scheduler, key, ray_kw):
    kind, kw = ray_kw
    with pytest.raises((AssertionError, ValueError)):       # Ray itself refuses this value
        _ray_scheduler(kind, **kw)
    with pytest.raises(SearchRecipeError) as err:
        load_search(_write(tmp_path, scheduler))
    assert f"'{key}'" in str(err.value) and "search.yaml" in str(err.value)


@pytest.mark.parametrize("scheduler, key", [
    ("{type: pbt, quantile_fraction: 0}", "scheduler.quantile_fraction"),      # would never exploit
    ("{type: pbt, resample_probability: 1.5}", "scheduler.resample_probability"),
])
def test_meaningless_pbt_values_are_refused(tmp_path, scheduler, key):
    with pytest.raises(SearchRecipeError, match=f"'{key}' in .*search.yaml"):
        load_search(_write(tmp_path, scheduler))


def test_good_edge_values_pass(tmp_path):
    load_search(_write(tmp_path, "{type: pbt, quantile_fraction: 0.5, resample_probability: 1}"))
    load_search(_write(tmp_path, "{type: asha, grace_period: 2, max_t: 2, reduction_factor: 1.5}"))


def test_grace_period_beyond_train_epochs_fails_before_anything_is_written(tmp_path, monkeypatch):
    import chorus.tune.runner as runner

    with pytest.raises(AssertionError):                      # Ray: grace_period must be <= max_t
        _ray_scheduler("asha", grace_period=5, max_t=3)

    def no_ray(*a, **k):
        raise RuntimeError("Ray must not start for a bad search recipe")

    monkeypatch.setattr(runner, "ray_session", no_ray)
    spec = load_search(_write(tmp_path, "{type: asha, grace_period: 5}", epochs=3))
    with pytest.raises(SearchRecipeError, match=r"'scheduler.grace_period' in .*search.yaml.*train.epochs \(3"):
        run_search(spec)
    assert not os.path.exists(tmp_path / "storage")
