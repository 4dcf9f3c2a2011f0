"""Edit distance between architectures (the metric under the GP kernel).

``d(a, b) = D_l(a, b) + λ · D_s(a, b)``

* ``D_l``, the **layer distance**: Levenshtein distance between the main-chain layer sequences
  (:class:`~morphnas.search.descriptors.Descriptor` ``tokens``) with insertion/deletion cost 1
  and substitution cost ``d_l(x, y)``: 1 for different kinds; for the same kind the mean over the
  attributes the kind uses (units, kernel, stride) of ``|x − y| / max(x, y)`` (0 when both are 0).
  Dense widths count (Auto-Keras 0.4 gave every Dense pair 0, so MLP widenings looked identical).
* ``D_s``, the **skip distance**: skips are ``(u, δ, type)`` rows (start depth, span, Add/Concat).
  A pair costs 1 for different types, else ``(|u_a − u_b| + |δ_a − δ_b|) / (max(u_a, u_b) +
  max(δ_a, δ_b))``; the set distance is the optimal assignment of the smaller set into the larger
  (``scipy.optimize.linear_sum_assignment``) plus 1 per unmatched skip.

Both parts are symmetric, 0 for identical architectures, and kept separate so λ can be fitted
without recomputing anything: the GP combines them.

Cost: one DP row is vectorised over a whole batch of other architectures at once (the
insertion recurrence along a row is a running minimum, ``np.minimum.accumulate``), and
:class:`DistanceCache` keeps rows keyed by the byte signatures of the main chain and the skip set,
so a new observation costs one row against the others and architectures sharing a main chain
share their layer-distance rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from morphnas.core.graph import Graph
from morphnas.core.layers import Layer
from morphnas.search.descriptors import (
    ATTRS,
    LRU,
    TOKENS,
    Descriptor,
    attr_weights,
    descriptor,
    kind_id,
)

# ----------------------------------------------------------------------------- single pairs


def layer_distance(a: Layer, b: Layer) -> float:
    """``d_l``: 1 across kinds, else the mean relative difference of the used attributes."""
    ta = np.array([[kind_id(a.kind), *(getattr(a, x) for x in ATTRS)]], dtype=np.float64)
    tb = np.array([[[kind_id(b.kind), *(getattr(b, x) for x in ATTRS)]]], dtype=np.float64)
    return float(_substitution_costs(ta, tb)[0][0, 0, 0])


def skip_pair_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """``d_s`` of two skips given as ``(u, δ, type)``."""
    return float(_skip_costs(np.asarray([a], float), np.asarray([[b]], float))[0, 0, 0])


def layers_distance(a: Descriptor, b: Descriptor) -> float:
    """``D_l`` of two descriptors."""
    return float(batch_layers_distance(a.token_ids, [b.token_ids])[0])


def skips_distance(a: Descriptor, b: Descriptor) -> float:
    """``D_s`` of two descriptors."""
    return float(batch_skips_distance(a.skips, [b.skips])[0])


def edit_distance(a: Graph, b: Graph, lam: float = 1.0) -> float:
    """``d = D_l + λ·D_s`` of two graphs."""
    da, db = descriptor(a), descriptor(b)
    return layers_distance(da, db) + lam * skips_distance(da, db)


# ----------------------------------------------------------------------------- batched kernels


def _pad(arrays: Sequence[np.ndarray], width: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Stack (L_i, width) arrays into (n, max L, width), padding with ``fill``; also the L_i."""
    lengths = np.array([len(x) for x in arrays], dtype=np.intp)
    out = np.full((len(arrays), max(int(lengths.max(initial=0)), 1), width), fill)
    for i, x in enumerate(arrays):
        out[i, : len(x)] = x
    return out, lengths


def _substitution_costs(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Substitution costs of each distinct token of ``ta`` (La, 4) against ``tb`` (n, Lb, 4).

    Returns ``(costs, inverse)``: costs (U, n, Lb) for the U distinct tokens, and inverse (La,)
    mapping each row of ``ta`` to its distinct token.
    """
    weights = attr_weights()
    unique, inverse = np.unique(ta, axis=0, return_inverse=True)
    costs = np.empty((len(unique), *tb.shape[:2]))
    kinds_b = tb[..., 0]  # (n, Lb)
    for k, token in enumerate(unique):
        kid = int(token[0])
        cost = np.zeros(tb.shape[:2])
        for c in np.flatnonzero(weights[kid]):
            a, b = token[1 + c], tb[..., 1 + c]
            top = np.maximum(a, b)
            rel = np.divide(np.abs(a - b), top, out=np.zeros_like(b), where=top > 0)
            cost += weights[kid, c] * rel
        costs[k] = np.where(kinds_b == kid, cost, 1.0)
    return costs, inverse.reshape(-1)


_COSTS: list[np.ndarray] = [np.zeros((0, 0))]


def _cost_table() -> np.ndarray:
    """(V, V) substitution costs between all tokens seen so far (a cache; grows with TOKENS)."""
    if len(_COSTS[0]) < len(TOKENS):
        every = np.asarray(TOKENS)  # (V, 4)
        costs, inverse = _substitution_costs(every, every[None])
        _COSTS[0] = costs[inverse, 0]
    return _COSTS[0]


def _padded(others: Sequence[np.ndarray], reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``others`` as (Lb, n) columns (reversed within each length), and lengths."""
    lengths = np.array([len(x) for x in others], dtype=np.intp)
    padded = np.zeros((max(int(lengths.max(initial=0)), 1), len(others)), np.intp)
    for i, x in enumerate(others):
        padded[: len(x), i] = x[::-1] if reverse else x  # padding is never read back
    return padded, lengths


def _step(row: np.ndarray, token: int, i: int, padded: np.ndarray, table: np.ndarray) -> np.ndarray:
    """DP row i (Lb+1, n) from row i−1 after consuming ``token`` (see batch_layers_distance)."""
    ramp = np.arange(len(row), dtype=np.float64)[:, None]  # (Lb+1, 1)
    nxt = np.empty_like(row)
    nxt[0] = i
    np.add(row[:-1], table[token][padded], out=nxt[1:])
    np.minimum(nxt[1:], row[1:] + 1.0, out=nxt[1:])
    nxt -= ramp
    np.minimum.accumulate(nxt, axis=0, out=nxt)
    nxt += ramp
    return nxt


def _all_rows(ids_a: np.ndarray, padded: np.ndarray, table: np.ndarray) -> list[np.ndarray]:
    """DP rows 0..len(ids_a), arrays (Lb+1, n): row k holds d(a[:k], b[:j]) for all j and b."""
    ramp = np.arange(padded.shape[0] + 1, dtype=np.float64)[:, None]
    rows = [np.repeat(ramp, padded.shape[1], axis=1)]  # distance from the empty prefix
    for i, token in enumerate(ids_a, start=1):
        rows.append(_step(rows[-1], int(token), i, padded, table))
    return rows


def batch_layers_distance(ids_a: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """``D_l`` from one token-id sequence (La,) to each of ``others`` (token ids): (n,).

    Row i of the DP table for every pair at once, A (Lb+1, n) — column-major, so the running
    minimum below runs over contiguous memory:
    ``B[j] = min(A_prev[j] + 1, A_prev[j−1] + sub(i, j))``, ``B[0] = i``, then the insertions
    along the row ``A[j] = min_{k≤j} B[k] + (j − k) = j + cummin(B − j)``.
    """
    n = len(others)
    if n == 0:
        return np.zeros(0)
    padded, lengths = _padded(others)
    table = _cost_table()
    row = np.repeat(np.arange(padded.shape[0] + 1, dtype=np.float64)[:, None], n, axis=1)
    for i, token in enumerate(ids_a, start=1):
        row = _step(row, int(token), i, padded, table)
    return row[lengths, np.arange(n)]


def _common_ends(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Lengths of the common prefix p and common suffix s of a and b, with p + s ≤ min length."""
    shortest = min(len(a), len(b))
    p = 0
    while p < shortest and a[p] == b[p]:
        p += 1
    s = 0
    while s < shortest - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    return p, s


def layers_distances_from_parent(
    parent: np.ndarray, children: Sequence[np.ndarray], others: Sequence[np.ndarray]
) -> np.ndarray:
    """``D_l`` (C, n) from each child to each of ``others``, reusing the parent's DP.

    A one-step morph changes a short block of the parent's main chain. With the parent's forward
    rows ``F_k = d(P[:k], ·)`` and backward rows ``G_k = d(P[k:], ·)`` (the DP on reversed
    sequences), a child ``C = P[:p] + block + P[La−s:]`` costs only ``len(block)`` DP steps:
    ``d(C, b) = min_j (F_p ⊕ block)[j] + G_{La−s}[j]`` (Hirschberg's split).
    """
    n = len(others)
    if n == 0 or not children:
        return np.zeros((len(children), n))
    table = _cost_table()
    padded, lengths = _padded(others)
    ends = [_common_ends(parent, child) for child in children]
    # Only the rows some child needs: forward up to the longest common prefix, backward up to
    # the longest common suffix.
    forward = _all_rows(parent[: max(p for p, _ in ends)], padded, table)
    reverse = _padded(others, reverse=True)[0]
    backward = _all_rows(parent[::-1][: max(s for _, s in ends)], reverse, table)
    j = np.arange(padded.shape[0] + 1)[:, None]  # (Lb+1, 1)
    flip = lengths[None, :] - j  # (Lb+1, n): column of b[j:] in the reversed DP
    valid = flip >= 0
    flip = np.maximum(flip, 0)
    columns = np.arange(n)[None, :]
    out = np.empty((len(children), n))
    for c, (child, (p, s)) in enumerate(zip(children, ends, strict=True)):
        row = forward[p]
        for i in range(p, len(child) - s):
            row = _step(row, int(child[i]), i + 1, padded, table)
        tail = np.where(valid, backward[s][flip, columns], np.inf)  # G_{La−s}[j], (Lb+1, n)
        out[c] = (row + tail).min(axis=0)
    return out


def _skip_costs(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Pair costs (n, m, Mb) of skips ``sa`` (m, 3) against padded ``sb`` (n, Mb, 3)."""
    a = sa[None, :, None, :]  # (1, m, 1, 3)
    b = sb[:, None, :, :]  # (n, 1, Mb, 3)
    num = np.abs(a[..., 0] - b[..., 0]) + np.abs(a[..., 1] - b[..., 1])
    den = np.maximum(a[..., 0], b[..., 0]) + np.maximum(a[..., 1], b[..., 1])
    cost = np.divide(num, den, out=np.zeros(num.shape), where=den > 0)
    return np.where(a[..., 2] == b[..., 2], cost, 1.0)


def _best_two(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """min over i ≠ j of first[:, i] + second[:, j], for (k, M) arrays (inf marks padding)."""
    total = first[:, :, None] + second[:, None, :]  # (k, M, M)
    diagonal = np.arange(first.shape[1])
    total[:, diagonal, diagonal] = np.inf
    return total.min(axis=(1, 2))


def batch_skips_distance(sa: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """``D_s`` from one skip set (m, 3) to each of ``others``: (n,).

    The optimal assignment is closed-form when either set has one or two skips (vectorised);
    larger pairs go through ``linear_sum_assignment`` one by one.
    """
    n, m = len(others), len(sa)
    if n == 0:
        return np.zeros(0)
    sb, counts = _pad(others, 3, 0.0)
    out = np.abs(counts - m).astype(np.float64)  # unmatched skips cost 1 each
    both = np.flatnonzero((counts > 0) & (m > 0))
    if len(both) == 0:
        return out
    cb = counts[both]
    costs = _skip_costs(sa, sb[both])  # (k, m, Mb)
    padding = np.arange(sb.shape[1])[None, :] >= cb[:, None]  # (k, Mb)
    costs = np.where(padding[:, None, :], np.inf, costs)
    if m == 1:
        out[both] += costs[:, 0, :].min(axis=1)
        return out
    one, two = cb == 1, cb == 2
    out[both[one]] += costs[one, :, 0].min(axis=1)
    if two.any():
        out[both[two]] += _best_two(costs[two, :, 0], costs[two, :, 1])
    rest = np.flatnonzero(cb >= 3)
    if m == 2:
        out[both[rest]] += _best_two(costs[rest, 0, :], costs[rest, 1, :])
        return out
    for index in rest.tolist():
        block = costs[index, :, : int(cb[index])]
        rows, cols = linear_sum_assignment(block)
        out[both[index]] += block[rows, cols].sum()
    return out


# ----------------------------------------------------------------------------- the cache

_Compute = Callable[[np.ndarray, Sequence[np.ndarray]], np.ndarray]
_Many = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], np.ndarray]


class _RowCache:
    """Symmetric distances between items keyed by signature, stored as rows over column ids.

    Rows are float32 arrays indexed by an interned column id, NaN where unknown; a query for a
    (queries × columns) block gathers, computes only the NaN entries (batched along whichever
    side is shorter), and stores them. Rows are LRU-evicted; this is only a cache.
    """

    def __init__(self, compute: _Compute, max_rows: int) -> None:
        # Rounded so that which side a pair was batched on (float summation order) never shows.
        self._compute: _Compute = lambda item, others: np.round(compute(item, others), 8)
        self._columns: dict[bytes, int] = {}
        self._rows: LRU = LRU(max_rows)
        self.computed = 0  # pairs computed (for benchmarks)

    def clear(self) -> None:
        self._columns.clear()
        self._rows.clear()

    def _row(self, key: bytes, size: int) -> np.ndarray:
        row = self._rows.get_or(key, lambda: np.full(max(size, 16), np.nan, np.float32))
        if len(row) < size:
            grown = np.full(max(size, 2 * len(row)), np.nan, np.float32)
            grown[: len(row)] = row
            self._rows[key] = row = grown
        return row  # type: ignore[no-any-return]

    def block(
        self,
        queries: Sequence[tuple[bytes, np.ndarray]],
        columns: Sequence[tuple[bytes, np.ndarray]],
        many: _Many | None = None,
    ) -> np.ndarray:
        """Distances (Q, n) between query and column items given as (signature, array).

        ``many(query items, column items) -> (Q', n')``, when given, computes all missing
        entries in one call (used for the children of one parent).
        """
        if len(self._columns) > 200_000:
            self.clear()
        col_ids = np.array(
            [self._columns.setdefault(key, len(self._columns)) for key, _ in columns], np.intp
        )
        col_items = {key: item for key, item in columns}
        size = len(self._columns)
        query_keys = list(dict.fromkeys(key for key, _ in queries))
        query_items = {key: item for key, item in queries}
        out = np.empty((len(query_keys), len(columns)), np.float32)
        for qi, key in enumerate(query_keys):
            out[qi] = self._row(key, size)[col_ids]
        missing_q, missing_c = np.nonzero(np.isnan(out))
        if len(missing_q):
            if many is not None and len(set(missing_q.tolist())) > 1:
                self._fill_many(
                    many, query_keys, query_items, col_items, columns, missing_q, missing_c, out
                )
            else:
                self._fill(query_keys, query_items, col_items, columns, missing_q, missing_c, out)
        index = {key: i for i, key in enumerate(query_keys)}
        return out[[index[key] for key, _ in queries]]

    def _fill_many(
        self,
        many: _Many,
        query_keys: list[bytes],
        query_items: dict[bytes, np.ndarray],
        col_items: dict[bytes, np.ndarray],
        columns: Sequence[tuple[bytes, np.ndarray]],
        missing_q: np.ndarray,
        missing_c: np.ndarray,
        out: np.ndarray,
    ) -> None:
        rows = sorted(set(missing_q.tolist()))
        keys = [query_keys[q] for q in rows]
        # Only the columns some row lacks (often one: the newest landmark); each pair's value
        # does not depend on which other columns share the batch.
        col_keys = list(dict.fromkeys(columns[c][0] for c in sorted(set(missing_c.tolist()))))
        values = np.round(many([query_items[k] for k in keys], [col_items[k] for k in col_keys]), 8)
        size = len(self._columns)
        ids = np.array([self._columns[k] for k in col_keys], np.intp)
        for q, key, value in zip(rows, keys, values, strict=True):
            row = self._row(key, size)
            unknown = np.isnan(row[ids])
            row[ids[unknown]] = value[unknown]
            out[q] = row[[self._columns[k] for k, _ in columns]]
        self.computed += len(rows) * len(col_keys)

    def _fill(
        self,
        query_keys: list[bytes],
        query_items: dict[bytes, np.ndarray],
        col_items: dict[bytes, np.ndarray],
        columns: Sequence[tuple[bytes, np.ndarray]],
        missing_q: np.ndarray,
        missing_c: np.ndarray,
        out: np.ndarray,
    ) -> None:
        pairs: dict[tuple[bytes, bytes], None] = {}
        for q, c in zip(missing_q.tolist(), missing_c.tolist(), strict=True):
            pairs[(query_keys[q], columns[c][0])] = None
        by_query: dict[bytes, list[bytes]] = {}
        by_column: dict[bytes, list[bytes]] = {}
        for qk, ck in pairs:
            by_query.setdefault(qk, []).append(ck)
            by_column.setdefault(ck, []).append(qk)
        size = len(self._columns)
        if len(by_column) <= len(by_query):
            for ck, qks in by_column.items():
                values = self._compute(col_items[ck], [query_items[qk] for qk in qks])
                for qk, value in zip(qks, values, strict=True):
                    self._row(qk, size)[self._columns[ck]] = value
        else:
            for qk, cks in by_query.items():
                values = self._compute(query_items[qk], [col_items[ck] for ck in cks])
                row = self._row(qk, size)
                row[[self._columns[ck] for ck in cks]] = values
        self.computed += len(pairs)
        for q, c in zip(missing_q.tolist(), missing_c.tolist(), strict=True):
            out[q, c] = self._row(query_keys[q], size)[self._columns[columns[c][0]]]


class DistanceCache:
    """``D_l`` and ``D_s`` blocks between descriptors, cached by main-chain / skip signature."""

    def __init__(self, max_rows: int = 8192) -> None:
        self.layers = _RowCache(batch_layers_distance, max_rows)
        self.skips = _RowCache(batch_skips_distance, max_rows)

    def clear(self) -> None:
        self.layers.clear()
        self.skips.clear()

    def block(
        self,
        queries: Sequence[Descriptor],
        columns: Sequence[Descriptor],
        parent: Descriptor | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(D_l, D_s), each (len(queries), len(columns)) float64.

        ``parent``: when the queries are one-step morphs of one architecture, its descriptor lets
        the layer distances reuse the parent's DP (same values, less work).
        """
        if not queries or not columns:
            empty = np.zeros((len(queries), len(columns)))
            return empty, empty.copy()
        many: _Many | None = None
        if parent is not None:
            ids = parent.token_ids
            many = lambda qs, cs: layers_distances_from_parent(ids, qs, cs)  # noqa: E731
        dl = self.layers.block(
            [(d.layer_key, d.token_ids) for d in queries],
            [(d.layer_key, d.token_ids) for d in columns],
            many,
        )
        ds = self.skips.block(
            [(d.skip_key, d.skips) for d in queries], [(d.skip_key, d.skips) for d in columns]
        )
        return dl.astype(np.float64), ds.astype(np.float64)


#: The process-wide cache (only a cache: clearing it changes timings, never results).
DISTANCES = DistanceCache()
