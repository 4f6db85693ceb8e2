"""Grouping rows of different lengths (audio samples, prompt tokens) into sub-batches
that waste little padding."""

from __future__ import annotations


def length_buckets(lengths: list[int], max_padded: int, window: int | None = None) -> list[list[int]]:
    """Indices grouped for batched inference: sorted by length, cut so that a group's padded
    size (rows x longest, every row counting at least ``window``) stays within ``max_padded``,
    and rows up to ``window`` never share a group with longer ones."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    for i in order:
        n = max(lengths[i], window or 0)
        crosses = window is not None and groups and lengths[groups[-1][-1]] <= window < lengths[i]
        if groups and not crosses and (len(groups[-1]) + 1) * n <= max_padded:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
