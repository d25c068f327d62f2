"""Significance of an arm against the study's reference (its first arm), per table cell (issue 16.2:
"a significance marker against the first arm"): Welch's two-sided t-test over seeds.

For samples a (n_a values) and b (n_b values) with sample variances s_a², s_b² (n − 1):

    t  = (mean_a − mean_b) / sqrt(s_a²/n_a + s_b²/n_b)
    df = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1))    (Welch–Satterthwaite)
    p  = 2 · P(T_df > |t|)                                                          (Student t, df degrees)

the same as ``scipy.stats.ttest_ind(a, b, equal_var=False)``. Not testable (``p`` None) when either arm
has fewer than 2 seeds or both have zero variance (t is then 0/0 or ±∞ with df undefined).
"""
from __future__ import annotations

import math
import statistics

TEST = "Welch's two-sided t-test over seeds"
LEVELS = ((0.01, "**"), (0.05, "*"))             # smallest first: p < 0.01 → "**", p < 0.05 → "*"


def welch(a: list[float], b: list[float]) -> dict:
    """``{"t", "df", "p", "n_a", "n_b"}`` for arm ``a`` against the reference ``b``; t, df and p are None
    where the test is not defined (see the module docstring)."""
    from scipy.stats import t as student_t

    na, nb = len(a), len(b)
    out = {"t": None, "df": None, "p": None, "n_a": na, "n_b": nb}
    if na < 2 or nb < 2:
        return out
    va, vb = statistics.variance(a) / na, statistics.variance(b) / nb
    if va + vb == 0.0:
        return out
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    out.update(t=t, df=df, p=float(2.0 * student_t.sf(abs(t), df)))
    return out


def marker(p: float | None) -> str:
    """``**`` for p < 0.01, ``*`` for p < 0.05, else (and when not testable) ``""``."""
    if p is None:
        return ""
    for level, mark in LEVELS:
        if p < level:
            return mark
    return ""


def legend(reference: str, n_ref: int, n_others: list[int]) -> str:
    """The line under a table that says what the markers mean and on how many seeds they rest."""
    ns = sorted(set(n_others))
    n_text = ", ".join(str(n) for n in ns) if ns else "—"
    return (f"Markers: {TEST} (Welch–Satterthwaite df) against the reference arm `{reference}` "
            f"(n = {n_ref} seeds; other arms n = {n_text}); * p < 0.05, ** p < 0.01; no marker: "
            f"p ≥ 0.05 or not testable (n < 2, or no variance in either arm). p-values are in study.json.")


def annotate(arms: dict, section: str = "metrics") -> None:
    """Add ``vs_reference`` (the :func:`welch` result) to every stats cell of ``arms[arm][section]`` of
    each arm after the first, in place; the first arm is the reference and gets none."""
    names = list(arms)
    if not names:
        return
    ref = arms[names[0]].get(section, {})
    for arm in names[1:]:
        for key, cell in arms[arm].get(section, {}).items():
            if key in ref:
                cell["vs_reference"] = welch(cell["values"], ref[key]["values"])
