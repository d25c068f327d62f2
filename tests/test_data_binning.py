"""Event and spike binning (chorus.data.binning) against tonic's ToFrame/Downsample and plain loops."""
import numpy as np
import pytest
import tonic.transforms as tt

from chorus.data.binning import events_to_frames, spikes_to_bins

TONIC_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])


def random_events(n, width, height, seed):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=TONIC_DTYPE)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["t"] = np.sort(rng.integers(0, 1_000_000, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


@pytest.mark.parametrize("mode,kw", [("count", "n_event_bins"), ("time", "n_time_bins")])
@pytest.mark.parametrize("T", [1, 4, 7])
def test_frames_equal_tonic_to_frame(mode, kw, T):
    ev = random_events(5003, 128, 128, seed=T)
    expected = tt.ToFrame(sensor_size=(128, 128, 2), **{kw: T})(ev.copy())
    ours = events_to_frames(ev, (128, 128, 2), T, mode=mode)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)


def test_non_square_sensor_matches_tonic():
    ev = random_events(3001, 240, 180, seed=1)
    expected = tt.ToFrame(sensor_size=(240, 180, 2), n_event_bins=3)(ev.copy())
    np.testing.assert_array_equal(events_to_frames(ev, (240, 180, 2), 3), expected)


def test_downsample_matches_tonic_downsample_then_to_frame():
    ev = random_events(20000, 128, 128, seed=2)
    expected = tt.Compose([tt.Downsample(spatial_factor=48 / 128),
                           tt.ToFrame(sensor_size=(48, 48, 2), n_event_bins=5)])(ev.copy())
    np.testing.assert_array_equal(events_to_frames(ev, (128, 128, 2), 5, size=48), expected)


def test_upscale_repeats_pixels_and_keeps_totals_per_source_pixel():
    ev = random_events(500, 34, 34, seed=3)
    native = events_to_frames(ev, (34, 34, 2), 2)
    big = events_to_frames(ev, (34, 34, 2), 2, size=68)
    assert big.shape == (2, 2, 68, 68)
    np.testing.assert_array_equal(big[:, :, ::2, ::2], native)
    np.testing.assert_array_equal(big[:, :, 1::2, 1::2], native)


def test_spike_bins_equal_plain_loop():
    rng = np.random.default_rng(0)
    spikes = np.zeros(4000, dtype=[("t", np.float32), ("unit", np.uint16)])
    spikes["t"] = rng.uniform(0, 1.5, 4000)
    spikes["unit"] = rng.integers(0, 700, 4000)
    ours = spikes_to_bins(spikes, 700, 10, 1.4)
    expected = np.zeros((10, 700), dtype=np.float32)
    for t, unit in zip(spikes["t"], spikes["unit"]):
        k = int(np.floor(float(t) / 1.4 * 10))
        if 0 <= k < 10:
            expected[k, unit] += 1
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("mode,kw", [("count", "n_event_bins"), ("time", "n_time_bins")])
def test_batch_of_uneven_samples_equals_tonic_per_sample(mode, kw, jit):
    """Both the compiled (numba) and the numpy path, on compact shard dtypes, against tonic."""
    from chorus.data import binning_jit
    from chorus.data.binning import batch_event_frames

    if jit and binning_jit.kernel() is None:
        pytest.skip("numba not installed")
    samples = [random_events(n, 128, 128, seed=n) for n in (3000, 2, 777, 10001)]
    samples[1]["t"] = 5                                  # two events at one time: no time window
    compact = [s.astype([("x", "u1"), ("y", "u1"), ("t", "<u4"), ("p", "u1")]) for s in samples]
    out = batch_event_frames(compact, (128, 128, 2), 4, size=48, mode=mode, jit=jit)
    assert out.shape == (4, 4, 2, 48, 48)
    to_frame = tt.Compose([tt.Downsample(spatial_factor=48 / 128),
                           tt.ToFrame(sensor_size=(48, 48, 2), **{kw: 4})])
    for b, events in enumerate(samples):
        np.testing.assert_array_equal(out[:, b], to_frame(events.copy()))


@pytest.mark.parametrize("sensor,size", [((34, 34, 2), 48), ((34, 34, 2), 16), ((240, 180, 2), 200),
                                         ((34, 34, 2), None)])
def test_compiled_resize_equals_numpy_path(sensor, size):
    from chorus.data import binning_jit
    from chorus.data.binning import batch_event_frames

    if binning_jit.kernel() is None:
        pytest.skip("numba not installed")
    samples = [random_events(n, sensor[0], sensor[1], seed=n).astype(
        [("x", "u1"), ("y", "u1"), ("t", "<u4"), ("p", "u1")]) for n in (500, 1203)]
    for mode in ("count", "time"):
        np.testing.assert_array_equal(
            batch_event_frames(samples, sensor, 3, size=size, mode=mode, jit=True),
            batch_event_frames(samples, sensor, 3, size=size, mode=mode, jit=False))
