"""An order-preserving parallel map with a bounded window, robust to crashing workers."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool


class OrderedMap:
    """``with OrderedMap(fn, tasks, n, kind) as results``: ``fn(task)`` for each task, in order.

    Runs on ``n`` worker processes (or threads) with at most ``4 * n`` tasks in
    flight. Processes are started with ``fork`` where the platform has it:
    ``spawn`` / ``forkserver`` children re-run the caller's ``__main__``, which
    Snakemake ``script:`` files do not guard; they start on entering, before any
    progress-bar thread exists. A task that kills its worker process (a crash
    in a C decoder) gives ``on_crash(task)`` and the pool is restarted.
    """

    def __init__(self, fn: Callable, tasks: list, workers: int, executor: str, on_crash: Callable):
        self.fn, self.tasks, self.executor, self.on_crash = fn, tasks, executor, on_crash
        self.workers = max(1, min(int(workers), len(tasks)))
        self.pool: Executor | None = None

    def __enter__(self) -> Iterator:
        if self.workers == 1:
            return map(self.fn, self.tasks)
        self._start()
        ahead = 4 * self.workers
        pending = deque((t, self.pool.submit(self.fn, t)) for t in self.tasks[:ahead])
        return self._drain(pending, iter(self.tasks[ahead:]))

    def _start(self) -> None:
        if self.executor == "thread":
            self.pool = ThreadPoolExecutor(self.workers)
            return
        fork = "fork" in multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if fork else "spawn")
        self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx)

    def _drain(self, pending: deque, rest: Iterator) -> Iterator:
        while pending:
            task, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:  # rerun it alone to tell the culprit from bystanders
                self.pool.shutdown(wait=True, cancel_futures=True)
                self._start()
                try:
                    result = self.pool.submit(self.fn, task).result()
                except BrokenProcessPool:
                    result = self.on_crash(task)
                    self._start()
                pending = deque((t, self.pool.submit(self.fn, t)) for t, _ in pending)
            nxt = next(rest, None)
            if nxt is not None:
                pending.append((nxt, self.pool.submit(self.fn, nxt)))
            yield result

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
