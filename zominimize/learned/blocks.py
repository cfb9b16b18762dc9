"""Per-coordinate arithmetic over blocks of coordinates, in place, for inference at large d.

A learned design's step is mostly per-coordinate: every coordinate's new moments, LSTM
state and step depend on that coordinate alone, given a few numbers shared by the run.
Written on whole arrays, such a step holds a dozen temporaries of the size of x at once;
at d = 10^6 they cost more memory than the optimizer's own state. :func:`per_coordinate`
runs the same function on blocks of coordinates instead (BLOCK on a CPU, GPU_BLOCK on a
GPU) and writes each block's results into the state's own tensors, so the temporaries are
a block's and no second copy of the state is made. With autograd (meta-training) or at
small d it calls the function once on the whole arrays and returns new tensors, so that
training differentiates the very arithmetic that inference runs.

On a CPU, in the main thread, the blocks run on one torch thread
(:func:`one_torch_thread`): a block's operations are too small for torch's intra-op
threads to pay for their synchronisation, which on a shared machine can make a step half
as slow again.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

import torch

#: Coordinates per block on a CPU (a block's temporaries stay in cache).
BLOCK = 16384
#: Coordinates per block on a GPU, where each operation is a kernel launch: blocks large
#: enough to keep it busy, small enough to bound the temporaries at any d.
GPU_BLOCK = 1 << 22


def block_size(device: torch.device) -> int:
    """Coordinates per block on ``device``."""
    return BLOCK if device.type == "cpu" else GPU_BLOCK


def blocked(d: int, device: torch.device = torch.device("cpu")) -> bool:
    """Whether a step over ``d`` coordinates on ``device`` runs in blocks, in place (no
    autograd, d above two blocks)."""
    return not torch.is_grad_enabled() and d > 2 * block_size(device)


def per_coordinate(fn: Callable[..., tuple], arrays: Sequence[torch.Tensor],
                   into: Sequence[torch.Tensor | None]) -> tuple:
    """``fn(*arrays)``, computed block by block into ``into`` when :func:`blocked`.

    Parameters
    ----------
    fn : callable
        Per-coordinate arithmetic: tensors whose last axis runs over the coordinates in,
        a tuple of such tensors out. An array whose last axis has size 1 is shared by all
        coordinates (it is passed whole to every block).
    arrays : sequence of tensors
        fn's arguments, the coordinates along the last axis.
    into : sequence of tensors or None
        One per output of fn: the tensor its blocks are written into (the state tensor
        that the output replaces, which the run owns), or None (or a tensor of another
        shape, such as a size-1 placeholder) for a new one.

    Returns
    -------
    tuple of tensors
        fn's outputs over all coordinates: new tensors when not blocked; in blocked mode
        the tensors of ``into`` themselves, overwritten, where they fit.
    """
    d = max(a.shape[-1] for a in arrays)
    device = arrays[0].device
    if not blocked(d, device):
        return fn(*arrays)
    size = block_size(device)
    outputs: list[torch.Tensor] | None = None
    with one_torch_thread() if device.type == "cpu" else nullcontext():
        for start in range(0, d, size):
            block = slice(start, start + size)
            results = fn(*(a if a.shape[-1] == 1 else a[..., block] for a in arrays))
            if outputs is None:
                outputs = [_target(target, result, d) for target, result in zip(into, results)]
            for out, result in zip(outputs, results):
                out[..., block] = result
    return tuple(outputs)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """In the main thread, run the body with torch's intra-op threads set to 1, then
    restore the count; in other threads, leave it alone.

    The count is global state of torch: a default for threads that have not used torch
    yet, and each thread's own once it has. Set from the main thread only, it cannot be
    left at 1 by two runs stepping in threads at once; a thread that first uses torch
    during such a section starts with 1 thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _target(target: torch.Tensor | None, result: torch.Tensor, d: int) -> torch.Tensor:
    """``target`` if it has the shape and type of a whole output, else a new tensor."""
    shape = result.shape[:-1] + (d,)
    if (target is not None and target.shape == shape and target.dtype == result.dtype
            and target.device == result.device):
        return target
    return result.new_empty(shape)
