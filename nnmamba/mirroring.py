"""What a left-right mirror does to a lateralised model's outputs: paired outputs (Left X / Right X
labels, R / L landmarks) trade places. One order for training (the generator swaps the points of a
mirrored head) and inference (TTA swaps a mirrored tile's channels back). Torch-free.

    >>> swap_order(4, [(1, 2)])
    [0, 2, 1, 3]
"""

from __future__ import annotations

from typing import Iterable


def swap_order(count: int, pairs: Iterable) -> list:
    """The index order of `count` outputs with each (a, b) pair exchanged: out[n] = in[order[n]]."""
    order = list(range(count))
    for a, b in pairs:
        order[a], order[b] = b, a
    return order
