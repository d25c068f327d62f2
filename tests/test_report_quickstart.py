"""``chorus report`` on runs of the real training loop: the quickstart model trained by
``chorus.train.run`` on real N-Digits shards, vanilla and MPS+TASG, with diagnostics every epoch.

Checks the issue's "the report renders for a quickstart run and for a pair of runs": the HTML parses,
every image is a non-empty PNG, the pair report shows both runs with differences, and a checkpoint
(measured now, not read from MLflow) reports the same kind of numbers as the run logged.
"""
import base64
import os
from html.parser import HTMLParser

import pytest
from mlflow.tracking import MlflowClient

from chorus.cli import main as cli
from chorus.config import load_recipe
from chorus.diagnostics import names
from chorus.report import load
from chorus.train import run
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shards = ndigits_shards(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("report_quickstart")
    out = {}
    for name, extra in (("vanilla", ["neuron.mps=false", "loss.gamma=0.0"]), ("mps_tasg", [])):
        recipe = load_recipe(QUICKSTART, tiny(shards, str(tmp / name), tmp, "diagnostics.every=1",
                                              "diagnostics.samples=32", f"tracking.run_name={name}", *extra))
        out[name] = run(recipe)
    return out, tmp


def _images(path):
    class P(HTMLParser):
        imgs = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs))

    p = P()
    p.imgs = []
    p.feed(open(path, encoding="utf-8").read())
    p.close()
    for img in p.imgs:
        png = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert img["src"].startswith("data:image/png;base64,") and png.startswith(PNG) and len(png) > 1000
    return [img["alt"] for img in p.imgs]


@pytest.mark.slow
def test_training_loop_logs_diagnostics_every_epoch(runs):
    results, _ = runs
    r = results["mps_tasg"]
    c = MlflowClient(r["tracking_uri"])
    arts = {a.path for a in c.list_artifacts(r["mlflow_run_id"], "diagnostics")}
    assert {"diagnostics/epoch_001", "diagnostics/epoch_002"} <= arts
    figs = {os.path.basename(a.path) for a in c.list_artifacts(r["mlflow_run_id"], "diagnostics/epoch_002")}
    assert {"accuracy.png", "membrane_stats.png", "membrane_histograms.png", "gradient_flow.png",
            "firing_rates.png"} <= figs
    hist = c.get_metric_history(r["mlflow_run_id"], names.membrane("std", 2, "features.0.lif"))
    assert len({m.step for m in hist}) == 2


@pytest.mark.slow
def test_pair_report_of_quickstart_runs(runs, tmp_path):
    results, _ = runs
    a, b = results["vanilla"]["run_dir"], results["mps_tasg"]["run_dir"]
    assert cli(["report", a, "--vs", b, "--out", str(tmp_path)]) == 0
    alts = _images(tmp_path / "report.html")
    assert sum(alt.startswith("membrane histograms") for alt in alts) == 2
    assert {"α trajectories", "training curves", "gradient norm against distance d"} <= set(alts)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "A = vanilla; B = mps_tasg (MPS+TASG)" in md and "Δ B−A" in md
    assert "[test split]" in md


@pytest.mark.slow
def test_report_of_a_checkpoint_measures_it_now(runs, tmp_path):
    results, _ = runs
    ck = results["mps_tasg"]["best_checkpoint"]
    r = load(ck, samples=16)
    for key in ("val/acc_step_1", "val/acc_first_3", names.membrane("mean", 3, "features.0.lif"),
                names.ENERGY_PJ, names.gradflow("features.0.lif", 2), names.alpha("features.0.lif")):
        assert key in r.metrics, key
    assert r.variant() == "MPS+TASG"
    assert cli(["report", ck, "--out", str(tmp_path)]) == 0
    assert "membrane histograms per timestep: " in " ".join(_images(tmp_path / "report.html"))
