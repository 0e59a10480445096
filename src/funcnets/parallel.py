"""Data parallelism with JAX's own SPMD machinery: one train step, any number of devices.

The batch is sharded along the mesh axis ``"data"``; params and optimizer state are
replicated (or, with ``fsdp=True``, each array is split along its largest divisible
axis to save memory). ``jax.jit`` then inserts the collectives. There is no hand-written
all-reduce: a mean over the sharded batch axis *is* the cross-device reduction.

BatchNorm under data parallelism, named as PyTorch names it:

* ``"sync"`` (SyncBatchNorm; funcnets' default): statistics over the global batch, so
  N devices compute exactly what one device computes on the same global batch.
* ``"per-device"`` (DistributedDataParallel's default with plain BatchNorm): each device
  normalises with its own sub-batch's statistics. DDP broadcasts buffers from rank 0
  before every forward, so the running statistics that persist are rank 0's update;
  funcnets keeps the first shard's update likewise.

Multi-host: call :func:`initialize` (``jax.distributed.initialize``) in every process
first; ``jax.devices()`` then lists every host's devices and the same code runs SPMD.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from funcnets.nn.functional import batch_norm_groups

__all__ = [
    "DATA_AXIS",
    "data_mesh",
    "shard_batch",
    "distribute",
    "batch_norm_mode",
    "initialize",
]

DATA_AXIS = "data"


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.array(devices), (DATA_AXIS,))


def _check_divisible(n: int, mesh: Mesh) -> None:
    if n % mesh.size:
        raise ValueError(
            f"the global batch of {n} does not split evenly over {mesh.size} devices; use a batch "
            f"size that is a multiple of {mesh.size}."
        )


def shard_batch(batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
    """Place every leaf of ``batch`` with axis ``batch_axis`` split over the mesh
    (``batch_axis=1`` for stacked epochs ``(steps, N, ...)``)."""
    spec = P(*([None] * batch_axis), DATA_AXIS)

    def put(x):
        _check_divisible(x.shape[batch_axis], mesh)
        if jax.process_count() > 1:  # each process passes its own slice of the global batch
            return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), np.asarray(x))
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(put, batch)


def _fsdp_spec(x: Any, n: int) -> P:
    shape = getattr(x, "shape", ())
    candidates = [i for i, d in enumerate(shape) if d % n == 0 and d >= n]
    if not candidates:
        return P()
    axis = max(candidates, key=lambda i: shape[i])
    return P(*([None] * axis), DATA_AXIS)


def distribute(tree: Any, mesh: Mesh, fsdp: bool = False) -> Any:
    """Replicate ``tree`` (e.g. a TrainState) over the mesh, or with ``fsdp`` split each
    array along its largest axis divisible by the device count (memory per device
    falls ~N-fold; jit gathers what each op needs)."""

    def put(x):
        spec = _fsdp_spec(x, mesh.size) if fsdp else P()
        sharding = NamedSharding(mesh, spec)
        if jax.process_count() > 1:
            return jax.make_array_from_callback(np.shape(x), sharding, lambda idx: np.asarray(x)[idx])
        return jax.device_put(x, sharding)

    return jax.tree_util.tree_map(put, tree)


@contextlib.contextmanager
def batch_norm_mode(mode: Literal["sync", "per-device"], mesh: Mesh | None = None) -> Iterator[None]:
    """While tracing, make BatchNorm use global (``"sync"``) or per-device statistics."""
    if mode == "sync":
        yield
        return
    if mode != "per-device":
        raise ValueError(f"batch_norm must be 'sync' or 'per-device', got {mode!r}")
    with batch_norm_groups((mesh or data_mesh()).size):
        yield


def initialize(coordinator_address: str, num_processes: int, process_id: int, local_device_ids=None) -> None:
    """Join a multi-host run (``jax.distributed.initialize``); on CPU hosts, cross-process
    collectives use gloo. Call before anything else touches JAX devices."""
    # only affects CPU devices; must be set before the backends start
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id, local_device_ids=local_device_ids)
