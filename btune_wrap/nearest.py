"""The neighbours model's search, compiled: mean gain over the nearest training chunks.

A module of its own so that importing :mod:`btune_wrap.neighbors` does not load numba (the
search compiles on first use, and its machine code is cached on disk). In NumPy the search cost
8.7 us per chunk decided (600 training chunks, 73 categories, batches of 128 chunks: the
distance product, ``argpartition`` and the gather of the neighbours' gains); compiled it costs
about a third of that (``benchmarks/bench_infer.py`` measures it in the engine).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def mean_gain_of_nearest(z, xt, norms, gains, k, out, gaussian=False):  # pragma: no cover
    """For each row of ``z`` (standardized features, ``(n, f)``), the mean of the ``gains``
    rows (``(m, c)``) of the ``k`` training rows nearest to it, into ``out`` (``(n, c)``).

    With ``gaussian`` the mean is weighted: ``exp(-(d / d_k)**2)`` for a neighbour at distance
    ``d``, ``d_k`` the k-th neighbour's (1 for all when ``d_k`` is 0), so that the nearest
    count most and the farthest about a third as much.

    ``xt`` holds the training rows' features transposed (``(f, m)``: the distance loop then
    runs along rows, 2.5x faster than along features) and ``norms`` their squared norms. Ties
    at the k-th distance go to the earlier rows (as a stable sort would)."""
    n, f = z.shape
    m = xt.shape[1]
    c = gains.shape[1]
    d2 = np.empty(m)
    near_d = np.empty(k)
    near_r = np.empty(k, dtype=np.int64)
    for i in range(n):
        # |x|^2 - 2 z.x orders the rows as |z - x|^2 does (|z|^2 is the same for all).
        d2[:] = norms
        for j in range(f):
            w = -2.0 * z[i, j]
            for r in range(m):
                d2[r] += w * xt[j, r]
        # The k nearest, kept sorted by insertion (np.partition cost 7 us on 600 rows; this
        # touches the list only for the ~k log(m/k) rows that enter it).
        size = 0
        for r in range(m):
            d = d2[r]
            if size == k and d >= near_d[k - 1]:
                continue
            p = size if size < k else k - 1
            while p > 0 and near_d[p - 1] > d:
                near_d[p] = near_d[p - 1]
                near_r[p] = near_r[p - 1]
                p -= 1
            near_d[p] = d
            near_r[p] = r
            if size < k:
                size += 1
        acc = out[i]
        acc[:] = 0.0
        total = 0.0
        zz = 0.0
        far = 0.0
        if gaussian:
            # near_d holds |x|^2 - 2 z.x: |z|^2 more is the squared distance.
            for j in range(f):
                zz += z[i, j] * z[i, j]
            far = max(near_d[k - 1] + zz, 0.0)
        for t in range(k):
            w = 1.0
            if gaussian and far > 0.0:
                w = np.exp(-max(near_d[t] + zz, 0.0) / far)
            total += w
            row = gains[near_r[t]]
            for q in range(c):
                acc[q] += w * row[q]
        for q in range(c):
            acc[q] /= total
