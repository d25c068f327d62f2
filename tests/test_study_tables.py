"""The study tables on synthetic run folders (tests/study_fixture.py), no training: the significance
markers against the first arm (Welch's t-test, checked against scipy and against closed forms of the
Student t distribution computed here by hand), the diagnostics per arm (mean and std computed here by hand)
and study.html (parsed with html.parser)."""
import base64
import json
import math
import os
from html.parser import HTMLParser

import pytest
from scipy import stats as sps

from chorus.study import significance, tables
from study_fixture import accs, study_folder


# --- Welch's t-test --------------------------------------------------------------------------------

def test_welch_equals_a_hand_computed_case_with_two_degrees_of_freedom():
    # a = [3, 5], b = [0, 2]: means 4 and 1, variances 2 and 2, so s²/n = 1 each: t = 3/√2, df = 4/2 = 2.
    # For df = 2 the two-sided p is 1 − |t|/√(2 + t²) (the t_2 CDF is 1/2 + t/(2√(2 + t²))).
    got = significance.welch([3.0, 5.0], [0.0, 2.0])
    t = 3 / math.sqrt(2)
    assert got["t"] == pytest.approx(t, rel=1e-12) and got["df"] == pytest.approx(2.0, rel=1e-12)
    assert got["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert got["p"] == pytest.approx(0.16795, abs=1e-5)
    assert (got["n_a"], got["n_b"]) == (2, 2)


def test_welch_equals_a_hand_computed_case_with_one_degree_of_freedom():
    # b has no variance: df = (s_a²/n_a)² / ((s_a²/n_a)²/(n_a − 1)) = n_a − 1 = 1, the Cauchy case,
    # two-sided p = 1 − (2/π)·atan|t|. a = [1, 3]: mean 2, s² = 2, s²/n = 1; b = [0, 0]: t = 2.
    got = significance.welch([1.0, 3.0], [0.0, 0.0])
    assert got["t"] == pytest.approx(2.0) and got["df"] == pytest.approx(1.0)
    assert got["p"] == pytest.approx(1 - 2 / math.pi * math.atan(2.0), rel=1e-9)


@pytest.mark.parametrize("a, b", [
    ([0.91, 0.93, 0.95], [0.90, 0.90, 0.97]),
    ([0.5, 0.52, 0.49, 0.55, 0.51], [0.6, 0.58]),
    pytest.param([0.961, 0.958, 0.970], [0.5, 0.5, 0.5],             # the reference without variance
                 marks=pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")),
    ([10.0, 12.5, 11.0, 30.0], [1.0, 2.0, 3.0]),
])
def test_welch_equals_scipy_unequal_variance_t_test(a, b):
    ref = sps.ttest_ind(a, b, equal_var=False)
    got = significance.welch(a, b)
    assert got["t"] == pytest.approx(float(ref.statistic), rel=1e-10)
    assert got["p"] == pytest.approx(float(ref.pvalue), rel=1e-8)
    if hasattr(ref, "df"):
        assert got["df"] == pytest.approx(float(ref.df), rel=1e-10)


@pytest.mark.parametrize("a, b", [([0.9], [0.8, 0.85]), ([0.9, 0.91], [0.8]), ([0.9, 0.9], [0.8, 0.8])])
def test_welch_is_not_testable_with_one_seed_or_no_variance_at_all(a, b):
    got = significance.welch(a, b)
    assert got["t"] is None and got["df"] is None and got["p"] is None
    assert significance.marker(got["p"]) == ""


@pytest.mark.parametrize("p, mark", [(0.0099, "**"), (0.01, "*"), (0.0499, "*"), (0.05, ""), (0.7, ""),
                                     (None, "")])
def test_markers_at_the_stated_levels(p, mark):
    assert significance.marker(p) == mark


# --- the study's tables ----------------------------------------------------------------------------

ENSEMBLE = {"vanilla": [0.90, 0.91, 0.92],   # the reference
            "mps": [0.95, 0.96, 0.97],       # t = 0.05 / √(2·10⁻⁴/3) ≈ 6.12, df = 4: p ≈ 0.004 → **
            "tasg": [0.925, 0.935, 0.945],   # t ≈ 3.06, df = 4: p ≈ 0.038 → *
            "same": [0.90, 0.92, 0.91]}      # same mean as the reference: t = 0, p = 1 → no marker
STEP1 = {"vanilla": [0.80, 0.85, 0.90], "mps": [0.81, 0.86, 0.91], "tasg": [0.7, 0.8, 0.9],
         "same": [0.5, 0.5, 0.6]}


@pytest.fixture()
def synthetic(tmp_path):
    table = {arm: [{"acc": accs(e, [s1, e])} for e, s1 in zip(ENSEMBLE[arm], STEP1[arm])] for arm in ENSEMBLE}
    runs = study_folder(tmp_path, table)
    return tables.aggregate("synthetic", list(ENSEMBLE), [0, 1, 2], runs), tmp_path


def test_p_values_in_study_json_equal_scipy_against_the_first_arm(synthetic):
    study, folder = synthetic
    tables.write(study, str(folder))
    saved = json.load(open(folder / "study.json"))
    assert saved["significance"]["reference"] == "vanilla" and "Welch" in saved["significance"]["test"]
    assert all("vs_reference" not in cell for cell in saved["arms"]["vanilla"]["metrics"].values())
    for arm in ("mps", "tasg", "same"):
        for key, values in (("acc", ENSEMBLE), ("acc_step_1", STEP1)):
            ref = sps.ttest_ind(values[arm], values["vanilla"], equal_var=False)
            got = saved["arms"][arm]["metrics"][key]["vs_reference"]
            assert got["p"] == pytest.approx(float(ref.pvalue), rel=1e-8), (arm, key)
            assert got["t"] == pytest.approx(float(ref.statistic), rel=1e-8)
            assert (got["n_a"], got["n_b"]) == (3, 3)
    ps = {arm: saved["arms"][arm]["metrics"]["acc"]["vs_reference"]["p"] for arm in ("mps", "tasg", "same")}
    assert ps["mps"] < 0.01 and 0.01 < ps["tasg"] < 0.05 and ps["same"] == pytest.approx(1.0)


def test_markdown_marks_each_cell_and_states_the_test_and_n(synthetic):
    study, _ = synthetic
    md = tables.markdown(study)
    assert "| vanilla | 3 | 91.00 ± 1.00 |" in md                    # the reference: never marked
    assert "| mps | 3 | 96.00 ± 1.00** |" in md
    assert "| tasg | 3 | 93.50 ± 1.00* |" in md
    assert "| same | 3 | 91.00 ± 1.00 |" in md
    legend = [line for line in md.splitlines() if line.startswith("Markers:")]
    assert len(legend) == 1
    assert "Welch" in legend[0] and "`vanilla`" in legend[0] and "n = 3" in legend[0]
    assert "* p < 0.05" in legend[0] and "** p < 0.01" in legend[0]


def test_an_arm_with_one_finished_seed_gets_no_marker_and_says_its_n(tmp_path):
    table = {"vanilla": [{"acc": accs(e, [e, e])} for e in (0.90, 0.91, 0.92)],
             "mps": [{"acc": accs(0.99, [0.99, 0.99])}]}
    study = tables.aggregate("one", ["vanilla", "mps"], [0, 1, 2], study_folder(tmp_path, table))
    assert study["arms"]["mps"]["metrics"]["acc"]["vs_reference"]["p"] is None
    md = tables.markdown(study)
    assert "| mps | 1 | 99.00 ± n/a |" in md
    assert "other arms n = 1" in md and {"arm": "mps", "seed": 1} in study["missing"]


# --- diagnostics ----------------------------------------------------------------------------------

def _diag(firing, pj, w1, rel1, **more):
    return {"firing/mean": firing, "energy/pj_per_sample": pj, "membrane/w1_avg": w1, "gradflow/rel_1": rel1,
            "val/acc": 0.5, "mps/alpha/l0": 0.6, **more}


EARLIER = _diag(0.9, 9e9, 9.0, 9.0)         # an earlier diagnostics record: never aggregated

DIAG_RUNS = {
    "vanilla": [_diag(0.02, 100.0, 0.10, 0.5, **{"membrane/dmean_1/l0": 0.3, "firing/l0/1": 0.01, "firing/l0": 0.1,
                                                 "sop/l0.conv": 7.0, "gradflow/zero_layers_1": 0}),
                _diag(0.04, 300.0, 0.14, 0.7, **{"membrane/dmean_1/l0": 0.5, "firing/l0/1": 0.03, "firing/l0": 0.1,
                                                 "sop/l0.conv": 7.0, "gradflow/zero_layers_1": 0}),
                _diag(0.06, 200.0, 0.12, 0.6, **{"membrane/dmean_1/l0": 0.4, "firing/l0/1": 0.05, "firing/l0": 0.1,
                                                 "sop/l0.conv": 7.0, "gradflow/zero_layers_1": 0})],
    "mps": [_diag(0.03, 150.0, 0.05, 2.0, **{"membrane/htilde_w1_avg": 0.01, "gradflow/zero_direct": 0}),
            _diag(0.05, 250.0, 0.07, 3.0, **{"membrane/htilde_w1_avg": 0.03, "gradflow/zero_direct": 2}),
            None],                           # this seed logged no diagnostics (diagnostics.every: 0)
}
# by hand: mean and sample std (n − 1) over the seeds that logged the key
DIAG_WANT = {
    "vanilla": {"firing/mean": (0.04, 0.02, 3), "energy/pj_per_sample": (200.0, 100.0, 3),
                "membrane/w1_avg": (0.12, 0.02, 3), "gradflow/rel_1": (0.6, 0.1, 3),
                "membrane/dmean_1/l0": (0.4, 0.1, 3), "firing/l0/1": (0.03, 0.02, 3), "firing/l0": (0.1, 0.0, 3),
                "sop/l0.conv": (7.0, 0.0, 3), "gradflow/zero_layers_1": (0.0, 0.0, 3)},
    "mps": {"firing/mean": (0.04, 0.01 * math.sqrt(2), 2), "energy/pj_per_sample": (200.0, 50 * math.sqrt(2), 2),
            "membrane/w1_avg": (0.06, 0.01 * math.sqrt(2), 2), "gradflow/rel_1": (2.5, 0.5 * math.sqrt(2), 2),
            "membrane/htilde_w1_avg": (0.02, 0.01 * math.sqrt(2), 2), "gradflow/zero_direct": (1.0, math.sqrt(2), 2)},
}


@pytest.fixture()
def with_diagnostics(tmp_path):
    table = {arm: [{"acc": accs(0.9, [0.9]), "diag": None if d is None else [EARLIER, d]} for d in runs]
             for arm, runs in DIAG_RUNS.items()}
    runs = study_folder(tmp_path, table)
    for arm, seed in runs:                   # a non-diagnostics record after the last diagnostics one
        with open(tmp_path / arm / f"seed_{seed}" / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 99, "test/acc": 0.9, "firing/mean": 5.0}) + "\n")
    return tables.aggregate("diag", ["vanilla", "mps"], [0, 1, 2], runs)


def test_diagnostics_are_the_last_diagnostics_record_mean_and_std_over_seeds(with_diagnostics):
    study = with_diagnostics
    for arm, want in DIAG_WANT.items():
        got = study["arms"][arm]["diagnostics"]
        assert set(got) == set(want), arm                # val/..., mps/alpha, diag/..., step, epoch left out
        for key, (mean, std, n) in want.items():
            assert got[key]["mean"] == pytest.approx(mean, rel=1e-12), (arm, key)
            assert got[key]["std"] == pytest.approx(std, rel=1e-9), (arm, key)
            assert got[key]["n"] == n
    assert study["arms"]["vanilla"]["diagnostics_epoch"] == [2.0, 2.0, 2.0]
    assert study["arms"]["mps"]["diagnostics_epoch"] == [2.0, 2.0]
    ref = sps.ttest_ind([2.0, 3.0], [0.5, 0.7, 0.6], equal_var=False)
    got = study["arms"]["mps"]["diagnostics"]["gradflow/rel_1"]["vs_reference"]
    assert got["p"] == pytest.approx(float(ref.pvalue), rel=1e-8)


def test_diagnostics_markdown_table_has_the_network_level_keys_per_arm(with_diagnostics):
    md = tables.markdown(with_diagnostics)
    assert "| quantity | vanilla | mps |" in md
    assert "| n | 3 | 2 |" in md and "| epoch | 2 | 2 |" in md
    assert "| `firing/mean` | 0.04 ± 0.02 | 0.04 ± 0.01414 |" in md
    assert "| `energy/pj_per_sample` | 200 ± 100 | 200 ± 70.71 |" in md
    # w1: t = 0.06/√(0.0004/3 + 0.0002/2) ≈ 3.93, df ≈ 2.88: p ≈ 0.03 → *  (scipy agrees below)
    assert 0.01 < sps.ttest_ind([0.05, 0.07], [0.10, 0.14, 0.12], equal_var=False).pvalue < 0.05
    assert "| `membrane/w1_avg` | 0.12 ± 0.02 | 0.06 ± 0.01414* |" in md
    assert "| `membrane/htilde_w1_avg` | — | 0.02 ± 0.01414 |" in md
    assert "| `gradflow/rel_1` | 0.6 ± 0.1 | 2.5 ± 0.7071 |" in md
    assert "| `gradflow/zero_direct` | — | 1 ± 1.414 |" in md          # counted once: shown
    assert "zero_layers_1" not in md                                  # never counted: left out
    for per_layer in ("dmean_1/l0", "firing/l0", "sop/l0.conv"):       # per-layer keys: study.json only
        assert per_layer not in md


def test_no_diagnostics_logged_means_no_diagnostics_table(synthetic):
    study, _ = synthetic
    assert all(a["diagnostics"] == {} for a in study["arms"].values())
    assert "Diagnostics" not in tables.markdown(study)


def test_a_broken_metrics_line_names_the_file_and_line(tmp_path):
    runs = study_folder(tmp_path, {"vanilla": [{"acc": accs(0.9, [0.9])}]})
    path = tmp_path / "vanilla" / "seed_0" / "metrics.jsonl"
    with open(path, "a") as f:
        f.write("{not json\n")
    with pytest.raises(tables.ResultsMissing, match=r"metrics\.jsonl, line 2: not JSON"):
        tables.aggregate("broken", ["vanilla"], [0], runs)


# --- study.html ------------------------------------------------------------------------------------

class _Page(HTMLParser):
    """Tags in order, the text of every table cell, the img sources; unclosed or misnested elements of
    the page's structure (html, head, body, table, tr, td, th, figure, p, h1, h2) are errors."""

    CHECKED = {"html", "head", "body", "table", "tr", "td", "th", "figure", "figcaption", "p", "h1", "h2", "title",
               "style", "code"}

    def __init__(self):
        super().__init__()
        self.stack, self.cells, self.images, self.tables, self.errors, self.cell = [], [], [], 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag in self.CHECKED:
            self.stack.append(tag)
        self.tables += tag == "table"
        if tag in ("td", "th"):
            self.cell = ""
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in self.CHECKED:
            if not self.stack or self.stack[-1] != tag:
                self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            else:
                self.stack.pop()
        if tag in ("td", "th"):
            self.cells.append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_study_html_is_written_beside_study_md_with_every_arm_and_the_figures(synthetic):
    study, folder = synthetic
    study["arms"]["mps"]["alpha"] = {"l0": tables.stats([0.55, 0.6, 0.65])}       # an MPS arm for the α figure
    paths = tables.write(study, str(folder))
    assert [os.path.basename(p) for p in paths] == ["study.json", "study.md", "study.html"]
    text = (folder / "study.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    page = _Page()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.stack == []
    md = (folder / "study.md").read_text()
    assert page.tables == sum(1 for a, b in zip(md.splitlines(), md.splitlines()[1:])
                              if a.startswith("|") and b.startswith("|---"))      # every Markdown table
    for arm in ENSEMBLE:
        assert arm in page.cells
    assert "96.00 ± 1.00**" in page.cells and "93.50 ± 1.00*" in page.cells    # the same cells as study.md
    assert len(page.images) == 2                                                # per-timestep curves, α per layer
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and img.get("alt")
        png = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert "Welch" in text


def test_study_html_without_alpha_has_only_the_accuracy_figure(synthetic):
    study, folder = synthetic
    tables.write(study, str(folder))
    page = _Page()
    page.feed((folder / "study.html").read_text(encoding="utf-8"))
    assert len(page.images) == 1 and "per-timestep" in page.images[0]["alt"]
