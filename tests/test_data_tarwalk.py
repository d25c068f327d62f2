"""Sample numbers of the tar walker agree with webdataset's ``group_by_keys`` on members it drops
(macOS ``._x`` AppleDouble files, names without a dot), and a duplicate suffix is a DataError.

Tars are written with :mod:`tarfile`; the reference is webdataset's own tarfile-based expander
followed by ``group_by_keys``."""
import io
import tarfile

import pytest
import webdataset as wds

from chorus.data import DataError
from chorus.data.tarwalk import expand_wanted


def write_tar(path, members):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def reference(path):
    with open(path, "rb") as f:
        return list(wds.tariterators.group_by_keys(
            {**m, "__url__": path} for m in wds.tariterators.tar_file_iterator(f)))


def ours(path, wanted):
    # the reader's own pipeline (chorus.data.reader._ShardBatches._read_shard)
    return list(wds.DataPipeline(wds.SimpleShardList([path]), expand_wanted(wanted),
                                 wds.tariterators.group_by_keys))


MEMBERS = [("s0.cls", b"0"), ("s0.json", b"{}"),
           ("._s0.cls", b"mac"),                     # AppleDouble metadata beside s0
           ("README", b"no dot"), ("dir/NOTES", b"no dot in a folder"),
           ("s1.cls", b"1"), ("s1.json", b'{"a": 1}'),
           ("._s1.json", b"mac"), ("s2.cls", b"2")]


@pytest.mark.parametrize("wanted", [{0}, {1}, {2}, {0, 1, 2}])
def test_dropped_members_do_not_shift_sample_numbers(tmp_path, wanted):
    path = str(tmp_path / "odd.tar")
    write_tar(path, MEMBERS)
    expected = reference(path)
    assert [s["__key__"] for s in expected] == ["s0", "s1", "s2"]
    got = ours(path, wanted)
    assert [s["__key__"] for s in got] == ["s0", "s1", "s2"]
    for ordinal, (g, e) in enumerate(zip(got, expected)):
        assert set(g) == set(e)
        for suffix in ("cls", "json"):
            if suffix in e:
                assert g[suffix] == (e[suffix] if ordinal in wanted else None), (ordinal, suffix)


def test_duplicate_suffix_is_a_data_error_naming_shard_and_key(tmp_path):
    path = str(tmp_path / "dup.tar")
    write_tar(path, [("s0.cls", b"0"), ("s1.cls", b"1"), ("s1.json", b"{}"), ("s1.CLS", b"2")])
    with pytest.raises(ValueError, match="duplicate"):
        reference(path)                                # webdataset refuses it too
    with pytest.raises(DataError, match="duplicate") as info:
        ours(path, {1})
    assert info.value.where == path and info.value.key == "s1"
    assert path in str(info.value) and "'s1'" in str(info.value)
