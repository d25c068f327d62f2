"""``chorus report``: a self-contained HTML report and a Markdown summary of one run, or of two runs
side by side with the differences (issue 7; the figures and tables behind docs/paper.md's claims).

``make_report(refs, out_dir, tracking_uri=None)`` reads each reference (MLflow run id, run folder or
checkpoint folder; :mod:`chorus.report.sources`) and writes ``report.html`` and ``report.md``.
"""
from __future__ import annotations

import os

from chorus.report.render import to_html, to_markdown_summary
from chorus.report.run_data import ReportError, RunData, assign_labels
from chorus.report.sections import build_sections
from chorus.report.sources import load


def render(runs: list[RunData]) -> tuple[str, str]:
    """(HTML, Markdown) of ``runs``, labelled."""
    assign_labels(runs)
    labels = [r.label for r in runs]
    title = "Chorus report: " + (" vs ".join(labels))
    sections = build_sections(runs)
    return to_html(title, labels, sections), to_markdown_summary(title, labels, sections, "report.html")


def make_report(refs: list[str], out_dir: str, tracking_uri: str | None = None,
                samples: int | None = None) -> tuple[str, str]:
    """Write ``out_dir/report.html`` and ``out_dir/report.md``; returns their paths."""
    runs = [load(ref, tracking_uri, samples) for ref in refs]
    html_text, md_text = render(runs)
    os.makedirs(out_dir, exist_ok=True)
    html_path, md_path = os.path.join(out_dir, "report.html"), os.path.join(out_dir, "report.md")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(html_text)
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(md_text)
    return html_path, md_path


__all__ = ["make_report", "render", "load", "RunData", "ReportError"]
