"""The grouped-bar figures (α per layer, SOPs per layer) share one helper; its bars are checked by hand."""
import math

import matplotlib
import pytest

from chorus.diagnostics import figures, names

matplotlib.use("Agg")


def _bars(fig):
    ax = fig.axes[0]
    return [(round(p.get_x(), 6), p.get_height()) for p in ax.patches], [t.get_text() for t in ax.get_xticklabels()]


def test_grouped_bars_by_hand():
    # Two runs, layers in natural order (block2 before block10); run b lacks block10 → NaN bar.
    data = [("a", {"block10": 3.0, "block2": 1.0}), ("b", {"block2": 2.0})]
    fig = figures._grouped_bars(data, "t", "y", log=True)
    bars, ticks = _bars(fig)
    # w = 0.8 / 2 = 0.4: run a at x = 0, 1; run b at x = 0.4, 1.4; bars start at x − w/2.
    assert ticks == ["block2", "block10"]
    assert [b[0] for b in bars] == [-0.2, 0.8, 0.2, 1.2]
    assert bars[0][1] == 1.0 and bars[1][1] == 3.0 and bars[2][1] == 2.0 and math.isnan(bars[3][1])
    assert fig.axes[0].get_yscale() == "log"
    lin = figures._grouped_bars(data[:1], "t", "y", ylim=(0, 1))
    assert lin.axes[0].get_ylim() == (0, 1) and lin.axes[0].get_yscale() == "linear"


@pytest.mark.parametrize("maker, key", [(figures.alpha_png, names.alpha), (figures.sop_png, names.sop)])
def test_alpha_and_sop_png_render(maker, key):
    png = maker([("run", {key("l1"): 0.5, key("l2"): 0.25})])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert maker([("run", {})]) is None
