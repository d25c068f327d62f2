"""A WebDataset pipeline stage that expands tar shards, reading only the samples asked for.

``webdataset``'s own expander parses every member with :mod:`tarfile` (about 0.2 ms each), which
is most of the cost of a small sample, and reads every byte even when a worker needs only its own
batches. This stage walks the 512-byte headers itself (ustar, with pax and GNU long-name records
understood) over a memory map of the shard, verifies each header's checksum, copies only the data
of the samples it is asked for,
and yields ``{"fname", "data", "__url__"}`` dicts for webdataset's ``group_by_keys``, exactly as
``tar_file_expander`` does (``data`` is None for skipped samples). Members are keyed by
``group_by_keys``' own rule (``base_plus_ext``); members it would drop are not yielded and get no
sample number, and a suffix twice in one sample raises :class:`DataError` naming shard and key. A bad header or a file that ends
inside a member raises :class:`DataError` naming the shard and the byte offset.
"""
from __future__ import annotations

import mmap
import os

from chorus.data.errors import DataError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)


def _number(field: bytes, url: str, offset: int) -> int:
    if field and field[0] & 0x80:                      # GNU base-256 for large values
        value = int.from_bytes(field[1:], "big")
        return value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise DataError(f"corrupt tar header at byte {offset}: bad number {text!r}",
                        where=url) from None


def _pax_records(data: bytes) -> dict[str, str]:
    records, pos = {}, 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key.decode()] = value.decode()
        pos += length
    return records


def walk(url: str, wanted) -> "iterator[dict]":
    """Members of one tar; data only for members of sample ordinals in ``wanted``."""
    with open(url, "rb") as f:
        size_on_disk = os.fstat(f.fileno()).st_size
        if size_on_disk == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            yield from _members(view, size_on_disk, url, wanted)


def _members(view, end: int, url: str, wanted):
    from webdataset.tariterators import base_plus_ext

    ordinal, last_key, suffixes = -1, None, set()
    long_name, pax = None, {}
    offset = 0
    while True:
        if offset >= end:
            return                                     # no end marker; counts are checked later
        header = view[offset:offset + BLOCK]
        if len(header) < BLOCK:
            raise DataError(f"truncated tar: {len(header)}-byte header at byte {offset}",
                            where=url)
        if header == ZERO_BLOCK:
            return                                     # end-of-archive marker
        stored = _number(header[148:156], url, offset)
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise DataError(f"corrupt tar header at byte {offset} (checksum mismatch)", where=url)
        size = _number(header[124:136], url, offset)
        typeflag = header[156:157]
        start = offset + BLOCK
        if typeflag in (b"x", b"g", b"L"):
            data = view[start:start + size]
            if typeflag == b"x":
                pax = _pax_records(data)
            elif typeflag == b"L":
                long_name = data.rstrip(b"\0").decode()
            offset = start + (size + BLOCK - 1) // BLOCK * BLOCK
            continue
        name = header[0:100].split(b"\0", 1)[0].decode()
        prefix = header[345:500].split(b"\0", 1)[0].decode()
        if prefix:
            name = prefix + "/" + name
        name = pax.get("path", long_name or name)
        size = int(pax.get("size", size))
        long_name, pax = None, {}
        if start + size > end:
            raise DataError(f"truncated tar: member {name!r} at byte {offset} needs {size} "
                            f"bytes, {end - start} left", where=url)
        offset = start + (size + BLOCK - 1) // BLOCK * BLOCK
        if typeflag not in (b"0", b"\0", b"7"):       # directories, links: nothing to read
            continue
        key, suffix = base_plus_ext(name)
        if key is None:
            continue                                   # group_by_keys drops it: no sample number
        if key != last_key:
            ordinal, last_key, suffixes = ordinal + 1, key, set()
        if suffix.lower() in suffixes:                 # group_by_keys' duplicate, as a DataError
            raise DataError(f"duplicate member {name!r} (suffix {suffix.lower()!r} twice in one "
                            f"sample) at byte {start - BLOCK}", where=url, key=key)
        suffixes.add(suffix.lower())
        data = view[start:start + size] if ordinal in wanted else None
        yield {"fname": name, "data": data, "__url__": url}


def expand_wanted(wanted, opener=None):
    """Pipeline stage: ``{"url"}`` dicts (from ``SimpleShardList``) → tar member dicts.

    ``opener(url)``, when given, is a context manager yielding ``(buffer, size)`` for the shard
    (:class:`chorus.data.shardio.ShardStore` gives remote shards this way); without it the URL is
    a local file, memory-mapped."""
    def stage(sources):
        for source in sources:
            if opener is None:
                yield from walk(source["url"], wanted)
                continue
            with opener(source["url"]) as (view, size):
                if size:
                    yield from _members(view, size, source["url"], wanted)
    return stage
