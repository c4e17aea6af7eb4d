"""Dense float32/float64 ``a @ b`` on the CPU through numpy's OpenBLAS, one BLAS thread per worker.

Why not ``torch.mm``: the score matrix of a ranking (queries x 50,000 images, d = 256) is the bulk of
an offline evaluation, and on AMD processors torch's MKL sgemm runs well below the core's peak (on
the 2-core EPYC this package is developed on: 111-129 GFLOP/s with MKL, 183-192 with OpenBLAS, for
the same product). Why our own threads: OpenBLAS's worker threads spin for ~0.1 s after each call,
which halves the speed of the torch OpenMP ops that follow (the rank counting); calls made from
sleeping ``ThreadPoolExecutor`` workers, each with OpenBLAS held to one thread, leave nothing spinning.

Only used where it is known to behave: numpy linked against OpenBLAS and ``threadpoolctl`` able to
hold it to one thread. Anything else (another BLAS, a GPU tensor, autograd) goes to ``torch.mm``.
Every element is the same sequential-over-d dot product whichever worker computes its row, so the
result does not depend on the number of threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# Smaller products (an env step's 64 queries) stay with torch.mm: measured here, OpenBLAS split over
# two workers only wins from a few hundred rows and a few hundred million multiply-adds up.
_MIN_ROWS = 256
_MIN_WORK = 1 << 28

_lock = threading.Lock()
_state: dict = {}


def _openblas_controller():
    """A threadpoolctl controller over numpy's OpenBLAS, or None where that is not what numpy uses."""
    with _lock:
        if "controller" not in _state:
            controller = None
            if os.environ.get("CHATIR_CPU_MATMUL", "openblas") == "openblas":
                try:
                    from threadpoolctl import ThreadpoolController

                    selected = ThreadpoolController().select(internal_api="openblas")
                    controller = selected if selected.lib_controllers else None
                except Exception:  # threadpoolctl missing or unable to read the loaded libraries
                    controller = None
            _state["controller"] = controller
        return _state["controller"]


def _pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _state.get("pool")
        # A forked child (SubprocVecEnv, DataLoader workers) inherits the pool but not its threads:
        # work handed to it would never run, so each process makes its own.
        if pool is None or _state.get("workers") != workers or _state.get("pid") != os.getpid():
            if pool is not None and _state.get("pid") == os.getpid():
                pool.shutdown(wait=False)
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chatir-matmul")
            _state.update(pool=pool, workers=workers, pid=os.getpid())
        return pool


def uses_openblas(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``matmul`` would compute ``a @ b`` through OpenBLAS (else it calls ``torch.mm``)."""
    return (
        a.device.type == "cpu"
        and b.device.type == "cpu"
        and a.dtype == b.dtype
        and a.dtype in (torch.float32, torch.float64)
        and not (a.requires_grad or b.requires_grad)
        and a.shape[0] >= _MIN_ROWS
        and a.shape[0] * a.shape[1] * b.shape[1] >= _MIN_WORK
        and _openblas_controller() is not None
    )


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a [M, K] @ b [K, N]``, written into ``out`` (a contiguous ``[M, N]`` tensor) when given."""
    if out is not None and (not out.is_contiguous() or out.shape != (a.shape[0], b.shape[1])):
        raise ValueError(f"out must be a contiguous [{a.shape[0]}, {b.shape[1]}] tensor, got {tuple(out.shape)}")
    if not uses_openblas(a, b):
        return torch.mm(a, b) if out is None else torch.mm(a, b, out=out)
    if out is None:
        out = torch.empty(a.shape[0], b.shape[1], dtype=a.dtype)
    a_np, b_np, out_np = a.numpy(), b.numpy(), out.numpy()
    workers = max(1, min(torch.get_num_threads(), a.shape[0]))
    bounds = np.linspace(0, a.shape[0], workers + 1).astype(int)
    with _openblas_controller().limit(limits=1):
        if workers == 1:
            np.matmul(a_np, b_np, out=out_np)
        else:
            jobs = [
                _pool(workers).submit(np.matmul, a_np[lo:hi], b_np, out=out_np[lo:hi])
                for lo, hi in zip(bounds[:-1], bounds[1:])
            ]
            for job in jobs:
                job.result()
    return out
