"""Worker processes for the reader (``data.worker_kind: processes``), for nodes with many cores.

Worker ``j`` of ``W`` reads, decodes, bins and augments the batches ``start_batch + j``,
``start_batch + j + W``, … of the rank's plan (:mod:`chorus.data.plan`), each with the very code
of the thread path (``_ShardBatches.batch_items`` and ``collate_arrays``: the same per-sample
augmentation seeds), and sends it back as tensors through its own bounded torch queue (the
tensor moves into shared memory once; only a handle crosses the pipe, as in torch's DataLoader);
the main process takes batch k from queue ``k mod W``, so batches come out in order and equal to
the thread path's. Workers are forked (as torch's DataLoader does on Linux) when iteration starts and
stopped when it ends or is abandoned. Remote shards are shared through the node-local cache:
the first worker to need a shard downloads it, the others wait on its lock and read the file.

A worker's error (a bad sample with ``on_error="raise"``, an unreachable store) is raised in the
main process with its message; a worker that dies without a word (killed, out of memory) gives a
:class:`DataError` naming the worker and its exit code. Bad samples skipped in workers are
counted in ``loader.skipped`` as in the thread path.
"""
from __future__ import annotations

import queue as queue_module
import threading

from chorus.data.errors import DataError


def _worker(dataset, j: int, workers: int, out, finished) -> None:
    import torch

    from chorus.data.reader import to_tensors

    torch.set_num_threads(1)                     # the work here is numba/numpy, one thread each
    state = {"skipped": 0, "lock": threading.Lock()}
    try:
        only = set(dataset.pending()[j::workers])
        for k, items, url in dataset.batch_items(state, only=only):
            batch = to_tensors(dataset.collate_arrays(k, items, url, state))
            out.put(("batch", k, batch, state["skipped"]))
        out.put(("done", None, None, state["skipped"]))
    except BaseException as error:               # handed to the main process, raised there
        try:
            out.put(("error", None, error, state["skipped"]))
        except Exception:                        # not picklable: send its text
            out.put(("error", None, DataError(f"{type(error).__name__}: {error}"),
                     state["skipped"]))
    finally:
        dataset.store.close()
        finished.wait(600)        # the main process takes the shared tensors from this one first


def _get(q, proc, j: int):
    while True:
        try:
            return q.get(timeout=0.5)
        except queue_module.Empty:
            if not proc.is_alive():
                try:
                    return q.get(timeout=0.5)
                except queue_module.Empty:
                    raise DataError(f"reader worker process {j} (pid {proc.pid}) died with exit "
                                    f"code {proc.exitcode} before sending its batch") from None


def run_processes(dataset, workers: int, prefetch: int, state: dict):
    """Generator of the rank's batches (tensors, or ``_Lost`` markers) made by ``workers``
    forked processes; ``state["skipped"]`` follows the workers' counts."""
    import torch.multiprocessing as torch_mp

    ctx = torch_mp.get_context("fork")
    queues = [ctx.Queue(maxsize=max(1, prefetch)) for _ in range(workers)]
    finished = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(dataset, j, workers, queues[j], finished),
                         daemon=True, name=f"chorus-reader-{j}") for j in range(workers)]
    for proc in procs:
        proc.start()
    skipped = [0] * workers
    complete = False
    try:
        for i, k in enumerate(dataset.pending()):
            j = i % workers
            kind, got, payload, count = _get(queues[j], procs[j], j)
            skipped[j] = count
            state["skipped"] = sum(skipped)
            if kind == "error":
                raise payload
            if kind != "batch" or got != k:
                raise DataError(f"reader worker {j} sent {kind} {got}, expected batch {k}")
            yield payload
        for j in range(workers):                 # the final skip counts
            kind, _, payload, count = _get(queues[j], procs[j], j)
            skipped[j] = count
            if kind == "error":
                raise payload
        state["skipped"] = sum(skipped)
        complete = True
    finally:
        finished.set()
        for proc in procs:
            if complete:                      # every batch received: let it exit by itself
                proc.join(timeout=5)
            if proc.is_alive():               # abandoned early, or stuck: stop it
                proc.terminate()
                proc.join(timeout=10)
        for q in queues:
            q.close()
            q.cancel_join_thread()
