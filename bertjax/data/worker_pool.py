"""create_pretraining_data's shards across processes: how many processes, the fork-server pool, results in order.

This process always works on shards itself; `prepare_workers` decides how many processes are worth using for a
corpus (and starts the fork server early), `run_shards` gives worker processes the shards this one is not busy
with. The dataset never depends on the number of processes: every shard's randomness comes from its own seed
(see `bertjax.data.shard_worker`).
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing import forkserver

from bertjax.data import shard_worker, text
from bertjax.data.tokenizer import BertTokenizer

MIN_MB_PER_WORKER = 1.5  # smaller corpora use fewer processes (see worker_processes)
IN_FLIGHT_PER_WORKER = 2  # shards submitted to each worker process at a time (bounds memory)

Progress = Callable[[int, shard_worker.ShardResult], None]  # (shard bytes, its result) after each shard


def worker_processes(num_workers: int, total_bytes: int, shard_bytes: int) -> int:
    """Processes worth using (this one included): at most one per shard and one per MIN_MB_PER_WORKER of text (a
    worker process's start-up is not worth it for a small corpus; bench/data_throughput.py measures both ways), so
    a small corpus runs in this process alone. The dataset does not depend on it."""
    num_shards = -(-total_bytes // shard_bytes)
    by_size = int(total_bytes // (MIN_MB_PER_WORKER * (1 << 20))) if MIN_MB_PER_WORKER > 0 else num_shards
    return max(1, min(num_workers, num_shards, by_size))


def prepare_workers(num_workers: int, total_bytes: int, shard_bytes: int) -> int:
    """The number of processes to use (`worker_processes`); with more than one, the fork server is started now, so
    that its imports overlap the work done before the shards are submitted."""
    workers = worker_processes(num_workers, total_bytes, shard_bytes)
    if workers > 1 and not _main_module_has_file():
        print("create_pretraining_data: the main script was read from stdin, which worker processes cannot "
              "re-import; running in this process only (run a script file to use all cores)", file=sys.stderr)
        workers = 1
    if workers > 1:
        _worker_context()
        forkserver.ensure_running()
    return workers


def _main_module_has_file() -> bool:
    """Whether worker processes can re-import the main module (multiprocessing does): no file (python -c, a
    notebook) is fine, a file name that does not exist (a script read from stdin) is not."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path is None or os.path.isfile(path)


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver: one fresh process imports the shard worker once, then workers are cheap forks of it (never of
    this process, which may run threads)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([shard_worker.__name__])
    return context


def run_shards(shards: Iterable[text.TextShard], num_workers: int, init_args: tuple, tok: BertTokenizer,
               progress: Progress, work: Callable = shard_worker.process_shard) -> list:
    """Run `work` (`shard_worker.process_shard`, or `hash_shard`) on every shard; return its results in shard order.

    `init_args` are `shard_worker.init_worker`'s; this process uses `tok` instead of loading the vocab again. With
    num_workers > 1, num_workers - 1 worker processes take the shards this one is not busy with
    (IN_FLIGHT_PER_WORKER each at most, so memory stays bounded), and their start-up overlaps its work.
    """
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    shard_worker.init_worker(*init_args, tokenizer=tok)
    pool = None
    if num_workers > 1:
        pool = futures.ProcessPoolExecutor(num_workers - 1, mp_context=_worker_context(),
                                           initializer=shard_worker.init_worker, initargs=init_args)
    results: list[shard_worker.ShardResult] = []
    pending: deque = deque()
    try:
        for shard in shards:
            if pool is not None and len(pending) < IN_FLIGHT_PER_WORKER * (num_workers - 1):
                pending.append((shard.progress_bytes, pool.submit(work, shard)))
            else:
                results.append(work(shard))
                progress(shard.progress_bytes, results[-1])
            while pending and pending[0][1].done():
                results.append(_collect(pending.popleft(), progress))
        while pending:
            results.append(_collect(pending.popleft(), progress))
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        shard_worker.WORKER_STATE.clear()
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous
    if pool is not None:
        pool.shutdown()
    return sorted(results, key=lambda result: result.index)


def _collect(item: tuple[int, futures.Future], progress: Progress) -> shard_worker.ShardResult:
    num_bytes, future = item
    result = future.result()
    progress(num_bytes, result)
    return result
