"""The CPU kernel's warm-buffer cache: blocks come back when torch frees the tensor, never earlier."""
import gc

import pytest
import torch

from chorus.neurons import LIF, buffers

SHAPE = (4, 1 << 18)  # 4 MiB of float32: above buffers.MIN_BYTES


@pytest.fixture(autouse=True)
def _clean():
    gc.collect()
    buffers.empty_cache()
    buffers.reset_peak()
    yield
    gc.collect()
    buffers.empty_cache()


def test_freed_block_is_reused_and_live_blocks_are_not():
    lent0 = buffers.stats()["lent"]  # blocks other tests may still hold
    a = buffers.empty(SHAPE)
    b = buffers.empty(SHAPE)
    assert a.data_ptr() != b.data_ptr()
    assert a.dtype == torch.float32 and a.shape == SHAPE and a.is_contiguous()
    assert a.data_ptr() % 64 == 0
    ptr = a.data_ptr()
    assert buffers.stats()["lent"] - lent0 == 2 * a.numel() * 4
    del a
    st = buffers.stats()
    assert (st["lent"] - lent0, st["peak"] - lent0, st["idle"]) == (b.numel() * 4, 2 * b.numel() * 4, b.numel() * 4)
    c = buffers.empty(SHAPE)
    assert c.data_ptr() == ptr
    assert buffers.stats()["idle"] == 0


def test_a_view_keeps_the_block_lent():
    a = buffers.empty(SHAPE)
    a.fill_(3.0)
    v = a.view(-1)[10:20]
    ptr = a.data_ptr()
    del a
    d = buffers.empty(SHAPE)
    assert d.data_ptr() != ptr
    d.fill_(0.0)
    assert torch.all(v == 3.0)
    del v
    assert buffers.empty(SHAPE).data_ptr() == ptr


def test_small_tensors_bypass_the_cache():
    lent0 = buffers.stats()["lent"]
    t = buffers.empty((3, 5))
    assert t.shape == (3, 5) and buffers.stats()["lent"] == lent0


def test_idle_cap(monkeypatch):
    monkeypatch.setenv("CHORUS_BUFFER_CACHE_MB", "6")  # room for one 4 MiB block only
    a, b = buffers.empty(SHAPE), buffers.empty(SHAPE)
    del a, b
    assert buffers.stats()["idle"] == 4 << 20
    buffers.empty_cache()
    assert buffers.stats()["idle"] == 0


def test_layer_outputs_come_from_the_cache_and_go_back():
    lent0 = buffers.stats()["lent"]
    lif = LIF(mps=True)
    x = (torch.randn(4, 8, 32768) * 1.5).requires_grad_()
    s = lif(x)
    assert buffers.stats()["lent"] - lent0 == s.numel() * 4
    s.sum().backward()
    del s
    gc.collect()
    assert buffers.stats()["lent"] - lent0 == x.grad.numel() * 4  # the input gradient is the only block left
    x.grad = None
    assert buffers.stats()["lent"] == lent0


def test_cache_off_gives_plain_resizable_tensors(monkeypatch):
    monkeypatch.setenv("CHORUS_BUFFER_CACHE_MB", "0")
    lent0 = buffers.stats()["lent"]
    t = buffers.empty(SHAPE)
    assert buffers.stats()["lent"] == lent0
    t.resize_(2 * SHAPE[0], SHAPE[1])  # a torch-allocated storage can grow
    assert t.shape == (2 * SHAPE[0], SHAPE[1])


def test_bad_cache_size_is_named(monkeypatch):
    monkeypatch.setenv("CHORUS_BUFFER_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="CHORUS_BUFFER_CACHE_MB='lots'"):
        buffers.empty(SHAPE)
