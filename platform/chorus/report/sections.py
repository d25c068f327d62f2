"""The content of a report, independent of its format: sections of text, tables and figures.

Both the HTML report and the Markdown summary are rendered from the same :class:`Section` list, so
they always show the same numbers. Figures are drawn from the metrics of all runs at once (one figure
compares the runs), except the membrane histograms, which each run's diagnostics logged as PNG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from chorus.diagnostics import figures as figs
from chorus.diagnostics.tables import Table, tables
from chorus.report.early_exit import early_exit_section
from chorus.report.headline import headline_table
from chorus.report.run_data import RunData

KEY_PARAMS = ("model.name", "neuron.mps", "neuron.alpha_init", "loss.gamma", "loss.temperature", "loss.p_drop",
              "data.T", "data.shards", "train.epochs", "optim.name", "optim.lr", "train.seed")


@dataclass
class Section:
    title: str
    text: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG)


def _runs_table(runs: list[RunData]) -> Table:
    keys = [k for k in KEY_PARAMS if any(k in r.params for r in runs)]
    if len(runs) > 1:  # every other recipe value that differs between the runs
        others = sorted({k for r in runs for k in r.params} - set(keys))
        keys += [k for k in others if len({r.params.get(k) for r in runs}) > 1 and not k.startswith(
            ("tracking.", "train.out_dir"))]
    rows = [["source"] + [r.source for r in runs],
            ["diagnostics epoch"] + [str(r.diag_epoch) if r.diag_epoch is not None else "–" for r in runs]]
    rows += [[k] + [str(r.params.get(k, "–")) for r in runs] for k in keys]
    return Table("Runs", ["", *[r.label for r in runs]], rows)


def _training_png(runs: list[RunData]) -> bytes | None:
    hist = [(r.label, {k: v for k, v in r.histories.items() if k.startswith("mps/alpha/")}) for r in runs]
    return figs.alpha_trajectory_png([(label, {k[len("mps/alpha/"):]: v for k, v in h.items()}) for label, h in hist])


def _curves_png(runs: list[RunData]) -> bytes | None:
    series = [(r.label, r.histories.get("val/acc", []), r.histories.get("val/acc_step_1", []),
               r.histories.get("train/loss", [])) for r in runs]
    if not any(acc or loss for _, acc, _, loss in series):
        return None
    fig, axes = figs._figure(10, 3.4, 1, 2)
    ax1, ax2 = axes[0]
    for i, (label, acc, step1, loss) in enumerate(series):
        style = figs.STYLES[i % 4]
        if acc:
            ax1.plot([p[0] for p in acc], [100 * p[1] for p in acc], style, marker="o", label=f"{label}: ensemble")
        if step1:
            ax1.plot([p[0] for p in step1], [100 * p[1] for p in step1], style, marker="x", label=f"{label}: t = 1 alone")
        if loss:
            ax2.plot([p[0] for p in loss], [p[1] for p in loss], style, label=label)
    ax1.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy")
    ax2.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    return figs._png(fig)


def build_sections(runs: list[RunData]) -> list[Section]:
    pairs = [(r.label, r.metrics) for r in runs]
    # Tables name the runs A, B, ... (their columns would not fit otherwise); figures use the labels.
    keys = [runs[0].label] if len(runs) == 1 else [chr(ord("A") + i) for i in range(len(runs))]
    legend = "" if len(runs) == 1 else " " + "; ".join(f"{k} = {r.label}" for k, r in zip(keys, runs)) + "."
    table_pairs = [(k, r.metrics) for k, r in zip(keys, runs)]
    tabs = tables(table_pairs)
    pngs = figs.all_pngs(pairs)

    def t(*names):
        return [tabs[n] for n in names if n in tabs]

    def f(*items):
        return [(caption, pngs[name]) for name, caption in items if name in pngs]

    hists = [(f"membrane histograms per timestep: {r.label}", r.figures["membrane_histograms.png"])
             for r in runs if r.figures.get("membrane_histograms.png")]
    traj = _training_png(runs)
    curves = _curves_png(runs)
    early = early_exit_section(runs)
    return [
        Section("Headline numbers", "The paper's claims, measured on these runs." + legend,
                [headline_table(table_pairs)]),
        Section("Per-timestep accuracy",
                "The output of subnetwork t alone, and the mean of the first k outputs (anytime inference): "
                "the paper's Table 1 for these runs.", t("accuracy"),
                f(("accuracy.png", "accuracy per timestep and anytime accuracy"))),
        Section("Initial-state statistics",
                "Mean and standard deviation of the carried potential V(t−1) (the initial state of subnetwork t) "
                "and of H~(t), per timestep, and the gap between consecutive timesteps (|Δμ|, |Δσ|, "
                "Wasserstein-1): the paper's Figure 1, quantified. MPS is claimed to narrow these gaps.",
                t("membrane", "membrane_layers"),
                f(("membrane_stats.png", "μ and σ per timestep and layer"),
                  ("membrane_gaps.png", "gaps between consecutive timesteps")) + hists),
        Section("MPS smoothing coefficient α", "α per layer at the end of training and over training.", t("alpha"),
                ([("α trajectories", traj)] if traj else []) + f(("alpha.png", "final α per layer"))),
        Section("Temporal gradient flow",
                "Per-sample norm of the gradient of the loss at timestep t' reaching a layer's input d timesteps "
                "earlier. MPS is claimed to ease temporal gradient vanishing: its ratio to d = 0 should decay "
                "more slowly.", t("gradient_flow"), f(("gradient_flow.png", "gradient norm against distance d"))),
        Section("Firing rates, synaptic operations and energy",
                "Accumulates (0.9 pJ) for spike-driven synaptic layers, multiply-accumulates (4.6 pJ) for the "
                "first layer; per sample, over all T timesteps.", t("energy", "firing"),
                f(("firing_rates.png", "firing rate per layer and timestep"),
                  ("synaptic_ops.png", "synaptic operations per layer"))),
        *([early] if early else []),
        Section("Training", "Validation accuracy and training loss over epochs.", [],
                [("training curves", curves)] if curves else []),
        Section("Runs", "Where each run came from and its recipe (values that differ between the runs are listed).",
                [_runs_table(runs)]),
    ]
