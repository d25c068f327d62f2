"""``study.html``: the study's report in one self-contained file (issue 16.2: "HTML + Markdown report with
the figures"): the same tables as ``study.md`` (converted from :func:`chorus.study.tables.markdown`, so
the two never disagree) and the figures of :mod:`chorus.study.figures` embedded as PNG data URIs.
"""
from __future__ import annotations

import base64
import html
import re

from chorus.study import figures

NUM = ' class="num"'                    # a right-aligned (---:) column's cells

STYLE = ("body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}"
         "td.num{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.5em 0}img{max-width:100%}")


def _inline(text: str) -> str:
    """Escape, then ``code`` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(md: str) -> str:
    """The subset of Markdown that :func:`chorus.study.tables.markdown` writes: ``#`` headings, pipe
    tables (a header row, an alignment row, body rows) and paragraphs."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            head, body = _row(block[0]), [_row(b) for b in block[2:]]
            right = [c.endswith(":") for c in _row(block[1])] if len(block) > 1 else []
            rows = ["<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
            for r in body:
                rows.append("<tr>" + "".join(
                    f"<td{NUM if j < len(right) and right[j] else ''}>{_inline(c)}</td>"
                    for j, c in enumerate(r)) + "</tr>")
            out.append("<table>\n" + "\n".join(rows) + "\n</table>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
            i += 1
        else:
            i += 1
    return "\n".join(out)


def _figure(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(study: dict, md: str) -> str:
    """The whole page for ``study`` whose Markdown is ``md``."""
    parts = [markdown_to_html(md), "<h2>Figures</h2>"]
    png = figures.per_timestep(study)
    if png:
        parts.append(_figure(png, "per-timestep accuracy per arm",
                             "Accuracy of each timestep alone (left) and of the ensemble of the first k timesteps "
                             "(right), mean over seeds with ± sample-std error bars."))
    png = figures.alpha(study)
    if png:
        parts.append(_figure(png, "MPS alpha per layer per arm",
                             "MPS α of each layer at the end of training, mean over seeds with ± sample-std "
                             "error bars."))
    title = html.escape(f"chorus study {study['name']}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
