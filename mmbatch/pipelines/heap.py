"""The C heap of the actors that run a model on their CPUs.

glibc's malloc serves a block above its mmap threshold (128 KiB at first, raised as such
blocks are freed, up to 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``; it gives
free memory at the top of its heap back to the system; and a thread other than the main one
gets an arena of its own, whose 64 MiB heaps it unmaps as they empty. A model's forward on
a CPU allocates and frees hundreds of MiB of activations per batch, in the thread Ray Data
runs the actor's calls in, so every batch maps them again and takes a page fault per 4 KiB
page. On 2 cores, CLIP ViT-B/32 alone at batch 32 took about 140,000 faults per batch and
ran 12-13 % slower than with this heap (1.2 million at batch 128); Whisper tiny.en in
CTranslate2, 18 % slower.

:data:`MODEL_HEAP` makes such an actor keep what it frees for the next batch, as PyTorch's
caching allocator does on a GPU (and as its CPU tuning guide gets by preloading tcmalloc or
jemalloc): one arena, every block from the heap, nothing given back. The process then holds
its peak working set, which a model worker reaches with its first batches anyway. Set
through the actor's runtime env, as glibc reads these at start-up; another C library ignores
them. A variable already set where the job runs is left as it is."""

from __future__ import annotations

import os

_NEVER = str(1 << 40)  # bytes: larger than any block or heap a worker has

MODEL_HEAP: dict[str, str] = {
    "MALLOC_ARENA_MAX": "1",  # every thread allocates from the main heap, which honours the thresholds below
    "MALLOC_MMAP_THRESHOLD_": _NEVER,  # no block gets an mmap of its own
    "MALLOC_TRIM_THRESHOLD_": _NEVER,  # free memory stays in the heap for the next batch
}


def model_heap_env() -> dict[str, str]:
    """The variables of :data:`MODEL_HEAP` that this (the driver's) environment, which a
    local cluster's workers inherit, does not set already."""
    return {k: v for k, v in MODEL_HEAP.items() if k not in os.environ}
