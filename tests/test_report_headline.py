"""Headline accuracy rows read only the source they are labelled with (test, val or diag), never a mix."""
import math

from chorus.report.headline import headline_values

ENS = "accuracy, ensemble of all T outputs (%) [{}]"


def test_missing_test_ensemble_accuracy_is_not_filled_from_diag():
    m = {"test/acc_step_1": 0.5, "test/acc_step_2": 0.6, "test/acc_first_1": 0.5, "test/acc_first_2": 0.7,
         "diag/acc": 0.9, "diag/acc_step_1": 0.8}
    v = headline_values(m)
    # The per-timestep rows come from the test split, so the ensemble row does too: it has no value.
    assert math.isnan(v[ENS.format("test split")])
    assert v["accuracy of timestep 1 alone (%)"] == 0.5
    assert v["accuracy of the last timestep alone (%)"] == 0.6


def test_present_ensemble_accuracy_of_the_same_source_is_shown():
    m = {"test/acc": 0.75, "test/acc_step_1": 0.5, "diag/acc": 0.9, "diag/acc_step_1": 0.8}
    assert headline_values(m)[ENS.format("test split")] == 0.75
    d = {"diag/acc": 0.9, "diag/acc_step_1": 0.8}
    assert headline_values(d)[ENS.format("diagnostics subset")] == 0.9
