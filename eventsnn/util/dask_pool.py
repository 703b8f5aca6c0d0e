"""Work spread over processes and machines: the one path, on ``dask.distributed``.

Every parallel job in eventsnn (verification runs, the sample chunks of one run, sweep cells) goes through
:class:`Pool`: ``workers=1`` and no scheduler runs the jobs in this process, one after another; ``workers=N``
starts a ``LocalCluster`` of N single-threaded worker processes; ``scheduler="tcp://HOST:PORT"`` submits to a
running Dask cluster (``dask scheduler`` + ``dask worker`` on any machines that see the same files; a Slurm
cluster via ``dask-jobqueue`` is one more line, see the README). Results never depend on where a job ran:
jobs are independent and their results are joined in submission order. Each job runs with ``EVENTSNN_WORKER`` set
to its worker's address (one torch thread per verification run; recorded in the run's attributes).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator



def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a Slurm allocation, a container's cpuset),
    not the machine's count -- threads shared out over the machine's cores would oversubscribe the ones given."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        return os.cpu_count() or 1


_SCHEDULER = re.compile(r"^(tcp|tls)://[^\s/:]+:\d{1,5}$")


def check_scheduler(address: str) -> str:
    """A scheduler address that parses and answers, or an :class:`EventsnnError` naming ``--scheduler``."""
    from eventsnn.util.errors import EventsnnError
    if not _SCHEDULER.match(address or ""):
        raise EventsnnError(f"--scheduler {address!r}: expected tcp://HOST:PORT (the address 'dask scheduler' prints)")
    with Pool(scheduler=address):
        pass
    return address


def _in_worker(fn: Callable, job):
    """Runs on a Dask worker: mark the process as a worker (its address, recorded in verification runs); the
    warnings the job raises travel back with its result (a worker's own stderr would print them raw)."""
    import warnings

    from distributed import get_worker
    os.environ["EVENTSNN_WORKER"] = get_worker().address
    _import_brian2_off_main_thread()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(job)
    return result, [w.message if isinstance(w.message, Warning) else UserWarning(str(w.message)) for w in caught
                    if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]


def relay_warnings(messages) -> None:
    """Warn, in this process, what the workers' jobs warned: merged-spike warnings of the same binning summed
    into one (each worker saw only its share of the samples), every other message once."""
    import warnings

    from eventsnn.util.errors import MergedSpikesWarning
    merged, seen = {}, set()
    for m in messages:
        if isinstance(m, MergedSpikesWarning):
            key = (m.what, m.dt_ms)
            a, n = merged.get(key, (0, 0))
            merged[key] = (a + m.merged, n + m.n_spikes)
        elif (type(m), str(m)) not in seen:
            seen.add((type(m), str(m)))
            warnings.warn(m, stacklevel=3)
    for (what, dt), (a, n) in merged.items():
        if a:
            warnings.warn(MergedSpikesWarning(a, n, dt, what), stacklevel=3)


def _import_brian2_off_main_thread():
    """Dask runs tasks in worker threads; importing Brian2 there fails, because its import installs a Ctrl-C
    handler and Python allows that only in the main thread. A worker never needs that handler: skip it."""
    import signal
    import sys
    import threading
    if "brian2" in sys.modules or threading.current_thread() is threading.main_thread():
        return
    install = signal.signal
    signal.signal = lambda *args, **kwargs: None
    from eventsnn.util.files import process_tempdir
    try:
        with process_tempdir():  # Brian2's debug log and script copy: in this process's own directory
            import brian2  # noqa: F401
    finally:
        signal.signal = install


class Pool:
    """``with Pool(workers, scheduler) as pool: for i, result in pool.as_completed(fn, jobs): ...``"""

    def __init__(self, workers: int = 1, scheduler: str | None = None):
        self.workers, self.scheduler = max(1, int(workers)), scheduler
        self.client = self.cluster = None

    @property
    def local(self) -> bool:
        """True when jobs run in this process (no cluster)."""
        return self.scheduler is None and self.workers <= 1

    def __enter__(self):
        if self.local:
            return self
        import logging

        from distributed import Client, LocalCluster
        if self.scheduler:
            from eventsnn.util.errors import EventsnnError
            try:
                self.client = Client(self.scheduler, timeout="10s")
            except (OSError, TimeoutError) as e:
                raise EventsnnError(f"--scheduler {self.scheduler}: cannot connect ({e}); start one with "
                                    f"'dask scheduler' and 'dask worker ADDRESS', or use --workers N") from None
        else:
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def as_completed(self, fn: Callable, jobs: Iterable) -> Iterator[tuple[int, object]]:
        """Run ``fn(job)`` for every job; yield ``(index, result)`` as each finishes (an error re-raises here)."""
        jobs = list(jobs)
        if self.local:
            for i, j in enumerate(jobs):
                yield i, fn(j)
            return
        from distributed import as_completed
        futures = [self.client.submit(_in_worker, fn, j, pure=False) for j in jobs]
        index = {f.key: i for i, f in enumerate(futures)}
        relayed = []
        try:
            for fut in as_completed(futures):
                result, warned = fut.result()
                relayed += warned
                yield index[fut.key], result
        finally:
            for f in futures:
                f.cancel()
            relay_warnings(relayed)

    def map(self, fn: Callable, jobs: Iterable, progress=None) -> list:
        """Results of ``fn(job)`` in the order of ``jobs``; ``progress`` (a tqdm bar) advances per job."""
        jobs = list(jobs)
        out = [None] * len(jobs)
        for i, r in self.as_completed(fn, jobs):
            out[i] = r
            if progress is not None:
                progress.update(1)
        return out
