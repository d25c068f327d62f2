"""Early exit (chorus.train.early_exit): the exit step, accuracy, mean timesteps and energy against a plain
loop over samples on saved logits; confidence 1 equals the full-T ensemble; the per-timestep energy
against the diagnostics' energy model run on the first t frames; `chorus eval --exit` and the report."""
import json
import math
import os

import pytest
import torch

from chorus import models
from chorus.cli import main as cli
from chorus.config import load_recipe
from chorus.diagnostics import names
from chorus.diagnostics.energy import SYNAPTIC, OpsCounter, energy_metrics
from chorus.train import run
from chorus.train.early_exit import exit_curve, exit_point, parse_exit_spec
from chorus.train.eval_checkpoint import evaluate_checkpoint
from chorus.train.step_energy import StepEnergy
from test_train_support import ROOT, ndigits_shards, tiny


def plain(logits, labels, threshold, energy):
    """One sample at a time, softmax by the math module."""
    T, N, C = logits.shape
    correct = steps_sum = used = full = 0.0
    for n in range(N):
        total = [0.0] * C
        for t in range(T):
            total = [a + float(b) for a, b in zip(total, logits[t, n])]
            mean = [v / (t + 1) for v in total]
            top = max(mean)
            conf = 1.0 / sum(math.exp(v - top) for v in mean)
            if (threshold < 1 and conf >= threshold) or t == T - 1:
                break
        correct += mean.index(top) == int(labels[n])
        steps_sum += t + 1
        used += float(energy[:t + 1, n].sum())
        full += float(energy[:, n].sum())
    return correct / N, steps_sum / N, 1 - used / full


def test_curve_matches_a_plain_loop_over_samples():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 200, 7, generator=g) * torch.linspace(0.5, 3, 5).view(5, 1, 1)
    labels = torch.randint(0, 7, (200,), generator=g)
    energy = torch.rand(5, 200, generator=g, dtype=torch.float64) * 100
    for p in exit_curve(logits, labels, (0.3, 0.5, 0.7, 0.9, 1.0), energy):
        acc, steps, saved = plain(logits, labels, p["threshold"], energy)
        assert p["acc"] == pytest.approx(acc, abs=1e-12) and p["mean_timesteps"] == pytest.approx(steps)
        assert p["energy_saved"] == pytest.approx(saved)
    curve = exit_curve(logits, labels, (0.3, 0.9), energy)
    assert curve[0]["mean_timesteps"] < curve[1]["mean_timesteps"] <= 5


def test_confidence_one_is_the_full_ensemble_even_when_softmax_saturates():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 50, 3, generator=g) * 100          # softmax max rounds to exactly 1.0
    labels = torch.randint(0, 3, (50,), generator=g)
    p = exit_point(logits, labels, 1.0)
    assert p["mean_timesteps"] == 4
    assert p["acc"] == float((logits.mean(0).argmax(-1) == labels).double().mean())


@pytest.mark.parametrize("text", ["confidence=0", "confidence=1.5", "conf=0.9", "confidence=high", "0.9"])
def test_bad_exit_spec_is_named(text):
    with pytest.raises(ValueError, match="--exit"):
        parse_exit_spec(text)


def test_step_energy_of_the_first_t_steps_is_the_diagnostics_energy_of_t_frames():
    torch.manual_seed(0)
    T, B = 4, 6
    model = models.create("vgg_small", 10, (2, 16, 16), neuron={"mps": True, "v_threshold": 0.5}, width=0.5).eval()
    x = (torch.rand(T, B, 2, 16, 16) < 0.3).float() * 2
    probe = StepEnergy()
    probe.attach(model, T)
    with torch.no_grad():
        model(x)
    probe.detach()
    per_step = probe.energy()                                     # [T, B]
    assert per_step.shape == (T, B) and bool((per_step > 0).all())
    for t in range(1, T + 1):                                      # layers are causal: the first t steps
        counter = OpsCounter()
        hs = [m.register_forward_hook(counter.hook(n)) for n, m in model.named_modules() if isinstance(m, SYNAPTIC)]
        with torch.no_grad():
            model(x[:t])
        for h in hs:
            h.remove()
        want = energy_metrics(counter, B, t)[names.ENERGY_PJ]
        assert float(per_step[:t].sum(0).mean()) == pytest.approx(want, rel=1e-9)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    shards = ndigits_shards(tmp_path_factory, limit=200)
    tmp = tmp_path_factory.mktemp("early_exit")
    recipe = load_recipe(os.path.join(ROOT, "recipes", "quickstart.yaml"),
                         tiny(shards, str(tmp / "run"), tmp, "train.epochs=1", "train.eval_test=false",
                              "diagnostics.every=1", "diagnostics.samples=16"))
    return run(recipe), tmp


@pytest.mark.slow
def test_eval_exit_writes_the_curve_and_the_report_shows_it(trained, capsys):
    result, tmp = trained
    assert cli(["eval", result["run_dir"], "--split", "val", "--exit", "confidence=0.8", "--json", str(tmp / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "| 0.8 ← |" in out and "energy saved" in out
    r = json.load(open(tmp / "e.json"))
    full = evaluate_checkpoint(result["run_dir"], split="val")
    curve = {p["threshold"]: p for p in r["early_exit"]["curve"]}
    assert curve[1.0]["acc"] == pytest.approx(full["acc"]) and curve[1.0]["energy_saved"] == 0
    assert r["early_exit"]["point"] == curve[0.8]
    saved = json.load(open(os.path.join(result["run_dir"], "early_exit.json")))
    assert saved["curve"] == r["early_exit"]["curve"]
    assert cli(["report", result["run_dir"], "--out", str(tmp / "rep")]) == 0
    md = open(tmp / "rep" / "report.md").read()
    assert "## Early exit" in md and f"| 0.8 | {100 * curve[0.8]['acc']:.2f} |" in md


@pytest.mark.slow
def test_bad_exit_exits_2(trained, capsys):
    result, _ = trained
    assert cli(["eval", result["run_dir"], "--exit", "confidence=2"]) == 2
    err = capsys.readouterr().err
    assert "--exit" in err and "Traceback" not in err
