"""What ``chatir answer`` and ``chatir index`` share to run data-parallel on Ray Data.

Both commands keep one process, the driver, as the only writer of their output (the answer store,
the index shards); Ray Data runs the model: ``map_batches`` over a pool of actors, one model per
actor, one actor per GPU (``--worker-gpus 1``) or a fraction of a CPU each on a CPU machine. A task
whose actor dies (a lost node, a killed process) is retried on a restarted actor: Ray Data's own
defaults for actor pools (``max_restarts=-1``, ``max_task_retries=-1``), kept as they are because
Ray 2.60 deprecates setting them through ``map_batches``. A Python error in the model fails the
run; everything the driver committed before it stays, and rerunning the command resumes.

Ray is an optional extra: ``pip install 'chatir-env[ray]'``. Without it the single-process path
runs, and ``--engine ray`` says how to install it.

CPU machines: an actor asking for a whole CPU each, beside Ray Data's own read task, can ask for
more CPUs than a small machine has and then nothing runs; ``--worker-cpus`` defaults to 0.5.
"""

from __future__ import annotations

import argparse
from typing import Any

INSTALL_HINT = "pip install 'chatir-env[ray]'  (or: pip install 'ray[data]>=2.40')"


class RayNotInstalledError(ValueError):
    """``--engine ray`` without Ray Data installed; the message says how to install it.

    A ``ValueError``:
    the commands report it like any other unusable argument, without a traceback.
    """


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--workers`` and the worker resources (cheap: imports nothing)."""
    group = parser.add_argument_group("engine (data-parallel on Ray Data; the default runs in this process)")
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: one process (default); ray: model actors on Ray Data, this process writes the results")
    group.add_argument("--workers", type=int, default=1, help="with --engine ray: model actors (one per GPU)")
    group.add_argument("--worker-gpus", type=float,
                       help="with --engine ray: GPUs per actor (default: 1 when the Ray cluster has GPUs, else 0)")
    group.add_argument("--worker-cpus", type=float, default=0.5,
                       help="with --engine ray: CPUs per actor (default 0.5: 2 actors fit 2 cores beside the read task)")
    group.add_argument("--ray-address", help="with --engine ray: a running cluster (default: $RAY_ADDRESS, else a local one)")


def require_ray():
    """Import Ray Data, or raise :class:`RayNotInstalledError` naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise RayNotInstalledError(
            f"--engine ray needs Ray Data, which is not installed ({err}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


class RaySession:
    """Starts Ray (or joins a running one) and shuts it down on exit if it started it.

    Args:
        address: a cluster address; None joins ``$RAY_ADDRESS`` or starts a local Ray.
        worker_gpus, worker_cpus: resources of each model actor (GPUs: None -> 1 when the cluster
            has any, else 0).
        max_retries: retries of a :meth:`probe` task whose worker died.
    """

    def __init__(self, address: str | None = None, *, worker_gpus: float | None = None, worker_cpus: float = 0.5,
                 max_retries: int = 3):
        self.ray = require_ray()
        self.address = address
        self.worker_cpus = float(worker_cpus)
        self.requested_gpus = worker_gpus
        self.max_retries = int(max_retries)
        self.started = False

    def __enter__(self) -> "RaySession":
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            self.started = True
        if self.requested_gpus is None:
            self.worker_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        else:
            self.worker_gpus = float(self.requested_gpus)
        # Ray Data's progress bars would interleave with the driver's own tqdm bar.
        ray.data.DataContext.get_current().enable_progress_bars = False
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.ray.shutdown()

    def actor_options(self, workers: int) -> dict[str, Any]:
        """``map_batches`` keyword arguments for a pool of ``workers`` model actors."""
        from ray.data import ActorPoolStrategy

        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        return {"compute": ActorPoolStrategy(size=workers), "num_cpus": self.worker_cpus, "num_gpus": self.worker_gpus}

    def probe(self, function, *args: Any) -> Any:
        """Run ``function(*args)`` once on a worker with an actor's resources.

        E.g. to read a model's fingerprint where the model will run, not on the driver.
        """
        remote = self.ray.remote(num_cpus=self.worker_cpus, num_gpus=self.worker_gpus, max_retries=self.max_retries)(function)
        return self.ray.get(remote.remote(*args))


def session_from_args(args: argparse.Namespace) -> RaySession:
    return RaySession(args.ray_address, worker_gpus=args.worker_gpus, worker_cpus=args.worker_cpus)
