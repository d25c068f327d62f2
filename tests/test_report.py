"""``chorus report`` on real MLflow runs in a sqlite store.

The runs are small but real: a tiny spiking network is trained for a few SGD steps per epoch, and at
each epoch the training engine's own ``run_diagnostics`` (chorus.train.evaluate) calls
``chorus.diagnostics.collect`` and logs metrics and figures through the real ``Tracker``. The report
must parse as HTML with every image present, non-empty and a PNG, and the Markdown summary must hold
the same tables; bad references must fail with a message naming them.
"""
import base64
import os
from html.parser import HTMLParser

import pytest
import torch
from torch import nn

from chorus.cli import main as cli
from chorus.losses import ensemble_loss
from chorus.neurons import LIF
from chorus.report import ReportError, make_report
from chorus.tracking import Tracker

PNG = b"\x89PNG\r\n\x1a\n"


class Tiny(nn.Module):
    def __init__(self, mps):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.lif1 = LIF(mps=mps)
        self.fc = nn.Linear(4 * 6 * 6, 16)
        self.lif2 = LIF(mps=mps)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        T = x.shape[0]
        s = self.lif1(self.conv(x.flatten(0, 1)).unflatten(0, (T, -1)))
        return self.out(self.lif2(self.fc(s.flatten(2))))


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(3, n, 2, 6, 6, generator=g) * (1 + y.view(1, n, 1, 1, 1).float())
    return x, y


def _log_run(uri, name, mps, gamma, tmp, epochs=2):
    """Train ``Tiny`` for ``epochs`` epochs and log it the way chorus.train.run does with
    ``diagnostics.every = epochs``: α and validation accuracy every epoch, diagnostics at the last."""
    from chorus.diagnostics.accuracy import per_timestep_accuracy
    from chorus.models import mps_layers
    from chorus.train.evaluate import alpha_values, run_diagnostics

    torch.manual_seed(0)
    model = Tiny(mps)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tr = Tracker(uri=uri, experiment="report-tests", local_dir=str(tmp / name))
    run_id = tr.start(name, {"neuron.mps": mps, "loss.gamma": gamma, "data.T": 3, "model.name": "tiny"})
    x, y = _data(32, 1)
    val = [_data(16, 2)]
    loss_kwargs = {"gamma": gamma, "temperature": 2.0}
    for epoch in range(1, epochs + 1):
        for _ in range(3):
            opt.zero_grad()
            loss = ensemble_loss(model(x), y, **loss_kwargs)["loss"]
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = per_timestep_accuracy(model(val[0][0]), val[0][1])
        metrics = {"epoch": epoch, "train/loss": float(loss.detach()), **alpha_values(mps_layers(model)),
                   **{k.replace("diag/", "val/"): v for k, v in acc.items()}}
        if epoch == epochs:
            metrics.update(run_diagnostics(model, val, loss_kwargs=loss_kwargs, layers=None, epoch=epoch,
                                           tracker=tr, step=3 * epoch))
        tr.log_metrics(metrics, 3 * epoch)
    tr.end()
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    vanilla = _log_run(uri, "vanilla", False, 0.0, tmp)
    mps = _log_run(uri, "mps_tasg", True, 1.0, tmp)
    return uri, vanilla, mps, tmp


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.captions, self._cap = [], 0, [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append((a.get("alt"), a.get("src", "")))
        elif tag == "table":
            self.tables += 1
        elif tag == "figcaption":
            self._cap = True

    def handle_data(self, data):
        if self._cap:
            self.captions.append(data)
            self._cap = False


def _parse(path):
    p = _Parser()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    p.close()
    for alt, src in p.images:
        assert src.startswith("data:image/png;base64,"), alt
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG) and len(png) > 1000, alt
    return p


def test_single_run_report(store, tmp_path):
    uri, _, mps, _ = store
    html_path, md_path = make_report([mps], str(tmp_path / "r"), tracking_uri=uri)
    p = _parse(html_path)
    captions = " | ".join(alt for alt, _ in p.images)
    for expected in ("accuracy per timestep", "μ and σ per timestep", "gaps between consecutive", "membrane histograms",
                     "α trajectories", "final α", "gradient norm", "firing rate", "synaptic operations",
                     "training curves"):
        assert expected in captions
    assert p.tables >= 8
    md = open(md_path, encoding="utf-8").read()
    assert "## Headline numbers" in md and "| quantity | mps_tasg (MPS+TASG) |" in md
    assert "Per-timestep accuracy (%), validation split" in md


def test_pair_report_shows_both_runs_and_differences(store, tmp_path):
    uri, vanilla, mps, _ = store
    assert cli(["report", vanilla, "--vs", mps, "--tracking-uri", uri, "--out", str(tmp_path / "pair")]) == 0
    p = _parse(tmp_path / "pair" / "report.html")
    hists = [alt for alt, _ in p.images if alt.startswith("membrane histograms")]
    assert len(hists) == 2  # one per run, from each run's logged diagnostics
    md = (tmp_path / "pair" / "report.md").read_text(encoding="utf-8")
    assert "A = vanilla; B = mps_tasg (MPS+TASG)" in md
    assert "| quantity | A | B | Δ B−A |" in md
    # Every table of the pair has a difference column; α exists only for B, so its Δ is "–".
    assert md.count("(B−A)") >= 6
    alpha_rows = [line for line in md.splitlines() if line.startswith("| lif1 |") and "–" in line]
    assert alpha_rows


def test_report_reads_alpha_history_per_epoch(store):
    from chorus.report import load

    uri, _, mps, _ = store
    r = load(mps, uri)
    assert [e for e, _ in r.histories["mps/alpha/lif1"]] == [1, 2]
    assert r.diag_epoch == 2 and "membrane_histograms.png" in r.figures


def test_bad_references_are_named(store, tmp_path, capsys):
    uri, _, _, tmp = store
    missing = "0123456789abcdef0123456789abcdef"
    with pytest.raises(ReportError, match=f"{missing}.*not found"):
        make_report([missing], str(tmp_path / "x"), tracking_uri=uri)
    absent = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(ReportError, match="no MLflow store at .*absent.db"):
        make_report([missing], str(tmp_path / "x"), tracking_uri=absent)
    assert not (tmp_path / "absent.db").exists()
    assert cli(["report", str(tmp_path / "no_such_checkpoint"), "--out", str(tmp_path / "y")]) == 2
    assert "no_such_checkpoint" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    with pytest.raises(ReportError, match="plain.*not a chorus run folder"):
        make_report([str(tmp_path / "plain")], str(tmp_path / "z"))
    tr = Tracker(uri=uri, experiment="report-tests")
    bare = tr.start("no_diagnostics", {"neuron.mps": True})
    tr.log_metrics({"val/acc": 0.5}, 1)
    tr.end()
    with pytest.raises(ReportError, match=f"{bare} \\(no_diagnostics\\) has no diagnostics"):
        make_report([bare], str(tmp_path / "w"), tracking_uri=uri)
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "trainer_state.json").write_text("{}")
    with pytest.raises(ReportError, match="ck.*has no recipe.yaml"):
        make_report([str(ck)], str(tmp_path / "v"))
    assert not os.path.exists(tmp_path / "v")
