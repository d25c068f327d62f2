"""How many pairs of a study train at a time (``concurrency``, :mod:`chorus.study.pairs`) and with how
many torch threads each: from the study file, else from the cores and the runs' threads."""
import pytest

from chorus.study.pairs import concurrency, trial_threads


@pytest.mark.parametrize("omp, cores, asked, todo, want", [
    ("1", 2, None, 4, 1),        # this 2-core machine: one run (1 torch thread + its reader) at a time
    ("1", 16, None, 12, 8),
    ("3", 16, None, 12, 4),
    (None, 16, None, 12, 8),     # OMP_NUM_THREADS unset: a run counts 1 thread + its reader
    ("1", 16, None, 3, 3),       # never more than the pairs left to train
    ("1", 2, 3, 12, 3),          # the study file's concurrency wins
    ("1", 2, 3, 1, 1),
])
def test_concurrency_defaults_from_the_cores_and_threads_and_the_study_file_wins(monkeypatch, omp, cores, asked,
                                                                                 todo, want):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert concurrency(asked, todo, cores) == want


def test_a_trial_trains_with_omp_threads_else_its_share_of_the_cores_minus_the_reader(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert trial_threads(4, 16) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert trial_threads(1, 2) == 1 and trial_threads(4, 16) == 3 and trial_threads(1, 16) == 15
