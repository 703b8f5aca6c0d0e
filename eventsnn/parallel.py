"""Samples of one run split over worker processes: the one place that cuts, runs and joins the chunks."""
from __future__ import annotations

import numpy as np


def run_sample_chunks(fn, make_job, events, indices, workers: int, desc: str, progress: bool = False):
    """Cut ``indices`` into ``workers`` consecutive chunks, run ``fn(make_job(i, events.subset(chunk)))`` for each
    in its own spawned process, and join the resulting runs in order (identical to one process: samples never
    interact). ``fn`` must be importable (it travels to the workers by name)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .progress import progress_bar
    from .runfile import concat_runs

    chunks = [c for c in np.array_split(np.asarray(indices), workers) if len(c)]
    jobs = [make_job(i, events.subset(c)) for i, c in enumerate(chunks)]
    with ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as ex, \
            progress_bar(total=len(jobs), desc=desc, disable=not progress) as bar:
        futures = [ex.submit(fn, j) for j in jobs]
        parts = []
        for f in futures:
            parts.append(f.result())
            bar.update(1)
    run = concat_runs(parts)
    run.sample_index = np.asarray(indices).copy()
    run.labels = events.labels[indices].copy()
    run.attrs["workers"] = len(jobs)
    return run
