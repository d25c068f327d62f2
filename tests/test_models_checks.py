"""Argument checks of the model builders: every bad size is refused with the argument and its value."""
import numpy as np
import pytest
import torch

import chorus.models as M


@pytest.mark.parametrize("name, kw", [("spikformer", {"patch_size": 16, "dim": 64, "heads": 4}),
                                      ("sdt", {"patch_size": 16, "dim": 64, "heads": 4})])
def test_transformer_grid_must_divide_by_patch(name, kw):
    # 20 = 16 + 4: the stem's four stride-2 max-pools (padding 1) would give a 2×2 grid out of 1.25 patches.
    with pytest.raises(ValueError, match=r"in_shape=\(2, 20, 20\).*H=20 and W=20.*patch_size=16"):
        M.create(name, 10, (2, 20, 20), **kw)
    with pytest.raises(ValueError, match=r"W=20.*patch_size=16"):
        M.create(name, 10, (2, 32, 20), **kw)
    # 32×32 with patch 16: 2×2 = 4 tokens (by hand); the model builds and runs.
    m = M.create(name, 10, (2, 32, 32), **kw)
    tokens = m.stem(torch.rand(1, 1, 2, 32, 32))
    assert tokens.shape == (1, 1, 4, 64)


def test_sdt_default_patch_is_checked_too():
    # sdt_2_256 picks patch H // 16 = 4 at H = 64; W = 18 is not a multiple of 4.
    with pytest.raises(ValueError, match="W=18.*patch_size=4"):
        M.create("sdt_2_256", 10, (2, 64, 18))


@pytest.mark.parametrize("shape", [np.array([2, 34, 34]), (np.int64(2), np.int32(34), 34),
                                   [torch.tensor(2), 34, 34]])
def test_numpy_and_torch_integers_in_in_shape_are_integers(shape):
    m = M.create("vgg_small", 10, shape)
    assert m.in_shape == (2, 34, 34) and all(type(s) is int for s in m.in_shape)
    assert m(torch.rand(2, 1, 2, 34, 34)).shape == (2, 1, 10)


@pytest.mark.parametrize("bad", [(2.0, 34, 34), (np.float64(2), 34, 34), (True, 34, 34), (np.True_, 34, 34),
                                 (np.int64(0), 34, 34)])
def test_non_integer_in_shape_is_still_refused(bad):
    with pytest.raises(ValueError, match="in_shape"):
        M.create("vgg_small", 10, bad)


@pytest.mark.parametrize("hidden", [0, -3, 2.5, True])
def test_vgg11_hidden_must_be_positive_integer(hidden):
    with pytest.raises(ValueError, match=rf"hidden={hidden!r} must be a positive integer"):
        M.create("vgg11", 10, (2, 32, 32), hidden=hidden, width=0.125)


@pytest.mark.parametrize("name", ["vgg9", "vgg11", "vgg_small"])
@pytest.mark.parametrize("dropout", [-1, -0.1, 1.0, 1.5, "0.1"])
def test_dropout_out_of_range_is_refused(name, dropout):
    with pytest.raises(ValueError, match=rf"dropout={dropout!r} must be a number in \[0, 1\)"):
        M.create(name, 10, (2, 32, 32), dropout=dropout, width=0.125)


def test_valid_dropout_still_builds():
    m = M.create("vgg_small", 10, (2, 32, 32), dropout=0.5, width=0.125)
    assert isinstance(m.readout.dropout, torch.nn.Dropout) and m.readout.dropout.p == 0.5
