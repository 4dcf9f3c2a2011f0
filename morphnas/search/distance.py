"""Edit distance between architectures (the metric under the GP kernel).

``d(a, b) = D_l(a, b) + λ · D_s(a, b)``

* ``D_l``, the **layer distance**: Levenshtein distance between the main-chain layer sequences
  (:class:`~morphnas.search.descriptors.Descriptor` ``tokens``) with insertion/deletion cost 1
  and substitution cost ``d_l(x, y)``: 1 for different kinds; for the same kind the *largest*,
  over the attributes the kind uses (units, kernel, stride), of ``|x − y| / max(x, y)`` (0 when
  both are 0). Dense widths count (Auto-Keras 0.4 gave every Dense pair 0, so MLP widenings
  looked identical). The largest, not the mean: a mean divides a change of one attribute by the
  number of attributes the kind has, so doubling a convolution's width (0.5/3 ≈ 0.17) looked a
  third as far as doubling a dense layer's (0.5) and a sixth as far as adding a skip (1). The
  posterior σ, and with it expected improvement, grows with distance, so widenings were hardly
  ever explored (issue 15: the first-layer-width objective of ``tests/search/objectives.py``).
* ``D_s``, the **skip distance**: skips are ``(u, δ, type)`` rows (start depth, span, Add/Concat).
  A pair costs 1 for different types, else ``(|u_a − u_b| + |δ_a − δ_b|) / (max(u_a, u_b) +
  max(δ_a, δ_b))``; the set distance is the optimal assignment of the smaller set into the larger
  (``scipy.optimize.linear_sum_assignment``) plus 1 per unmatched skip.

Both parts are symmetric, 0 for identical architectures, and kept separate so λ can be fitted
without recomputing anything: the GP combines them.

Cost: one DP row is vectorised over a whole batch of other architectures at once (kept shifted
by the column index, the insertion recurrence along a row is a running minimum), children of one
architecture reuse its DP rows, skip pair costs are computed once per distinct skip, and
:class:`DistanceCache` keeps rows keyed by the byte signatures of the main chain and the skip set,
so a new observation costs one row against the others and architectures sharing a main chain
share their layer-distance rows. Values are rounded to 8 decimals when cached, so float
summation order (which batch, which side) never shows.

Main chains are compared as token codes (:func:`~morphnas.search.descriptors.encode_tokens`), a
pure function of each token: substitution costs are computed from the decoded tokens, so no
table of tokens met so far is shared (or raced for) between threads.

Every memo here lives in a :class:`DistanceCache` (part of the search's one
:class:`~morphnas.search.cache.SearchCache`); the functions take its tables as optional
arguments and compute everything afresh without them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from morphnas.core.graph import Graph
from morphnas.core.layers import Layer
from morphnas.search.descriptors import (
    ATTRS,
    Descriptor,
    attr_weights,
    decode_tokens,
    descriptor,
    kind_id,
)
from morphnas.search.memo import LRU, CacheStats

#: Column sets (token-code sequences, forward or reversed, or skip sets) by signature.
Columns = LRU[tuple[Any, ...], Any]
#: DP rows of expanded nodes: (token codes, the others' signature) -> (forward, backward rows).
KnownRows = LRU[tuple[bytes, tuple[bytes, ...]], tuple[list[np.ndarray], list[np.ndarray]]]

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
            np.maximum(cost, rel, out=cost)
        costs[k] = np.where(kinds_b == kid, cost, 1.0)
    return costs, inverse.reshape(-1)


def _token_costs(code: int, tokens: np.ndarray) -> np.ndarray:
    """Substitution costs (U,) of the token with this code against ``tokens`` (U, 4): the
    arithmetic of :func:`_substitution_costs`, for one token."""
    token = decode_tokens(np.array(code))
    kid = int(token[0])
    weights = attr_weights()
    cost = np.zeros(len(tokens))
    for c in np.flatnonzero(weights[kid]):
        a, b = token[1 + c], tokens[:, 1 + c]
        top = np.maximum(a, b)
        rel = np.divide(np.abs(a - b), top, out=np.zeros_like(b), where=top > 0)
        np.maximum(cost, rel, out=cost)
    return np.where(tokens[:, 0] == kid, cost, 1.0)


#: Rows per block of the running minimum (DP heights are padded to a multiple of it).
_BLOCK = 8


class _Columns:
    """Token-code sequences as the columns of a batched DP.

    ``padded`` (H − 1, n): codes of each sequence down a column (reversed within its length when
    ``reverse``; the padding is never read back), with ``H`` the DP height: the longest length
    plus one, rounded up to a multiple of :data:`_BLOCK`; ``lengths`` (n,). :meth:`costs`
    computes one token's substitution costs against the distinct tokens of the columns and
    gathers them for every entry, once per token.
    """

    def __init__(self, others: Sequence[np.ndarray], reverse: bool = False) -> None:
        self.lengths = np.array([len(x) for x in others], dtype=np.intp)
        height = -(-(int(self.lengths.max(initial=0)) + 1) // _BLOCK) * _BLOCK
        self.padded = np.zeros((height - 1, len(others)), np.intp)
        for i, x in enumerate(others):
            self.padded[: len(x), i] = x[::-1] if reverse else x
        distinct, inverse = np.unique(self.padded, return_inverse=True)
        self._distinct = decode_tokens(distinct)  # (U, 4)
        self._inverse = inverse.reshape(self.padded.shape)  # (H − 1, n) into distinct
        self._costs: dict[int, np.ndarray] = {}

    def start(self, width: int = 1) -> np.ndarray:
        """DP row 0 (the empty prefix) for ``width`` sequences side by side: (H, width·n)."""
        return np.zeros((self.padded.shape[0] + 1, width * self.padded.shape[1]))

    def costs(self, token: int) -> np.ndarray:
        """``sub(token, b_j) − 2`` for every padded entry (H − 1, n) (see layers_distances)."""
        found = self._costs.get(token)
        if found is None:
            found = self._costs[token] = _token_costs(token, self._distinct)[self._inverse] - 2.0
        return found


def _columns(
    others: Sequence[np.ndarray], reverse: bool = False, memo: Columns | None = None
) -> _Columns:
    """The columns of ``others``, from ``memo`` when given (the same landmarks are the columns
    of most batches of a search)."""
    if memo is None:
        return _Columns(others, reverse)
    key = ("layers", reverse, tuple(x.tobytes() for x in others))
    return memo.get_or(key, lambda: _Columns(others, reverse))  # type: ignore[no-any-return]


def _cummin(x: np.ndarray) -> np.ndarray:
    """Running minimum down axis 0 of a C-contiguous array, in place (returns ``x``).

    By blocks of :data:`_BLOCK` rows (the height is a multiple of it): running minima within
    every block at once, then each block takes the minimum so far from the end of the one
    before. About two passes over the data, where ``np.minimum.accumulate`` runs a scalar loop.
    """
    blocks = x.reshape(len(x) // _BLOCK, _BLOCK, *x.shape[1:])
    for r in range(1, _BLOCK):
        np.minimum(blocks[:, r], blocks[:, r - 1], out=blocks[:, r])
    for b in range(1, len(blocks)):
        np.minimum(blocks[b], blocks[b - 1, -1], out=blocks[b])
    return x


def _step(row: np.ndarray, costs: Sequence[np.ndarray]) -> np.ndarray:
    """The next DP row (H, width) after one token per side-by-side part (see layers_distances).

    ``costs``: that token's :meth:`_Columns.costs` for each part of ``row``'s width, in order.
    """
    nxt = np.empty(row.shape)
    nxt[0] = 0.0
    start = 0
    for part in costs:
        stop = start + part.shape[1]
        np.add(row[:-1, start:stop], part, out=nxt[1:, start:stop])
        start = stop
    np.minimum(nxt[1:], row[1:], out=nxt[1:])
    return _cummin(nxt)


def _paired_rows(
    a: np.ndarray,
    ca: _Columns,
    start_a: np.ndarray,
    b: np.ndarray,
    cb: _Columns,
    start_b: np.ndarray,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The DP rows (H, n) after each token of ``a`` against ``ca``, from row ``start_a``, and of
    ``b`` against ``cb`` (the same H and n) from ``start_b``; run side by side in one array while
    both last (the same values with half the numpy calls)."""
    n = ca.padded.shape[1]
    shared = min(len(a), len(b))
    rows_a: list[np.ndarray] = []
    rows_b: list[np.ndarray] = []
    if shared:
        row = np.concatenate([start_a, start_b], axis=1)
        for i in range(shared):
            row = _step(row, (ca.costs(int(a[i])), cb.costs(int(b[i]))))
            rows_a.append(row[:, :n])
            rows_b.append(row[:, n:])
    for ids, columns, rows, start in ((a, ca, rows_a, start_a), (b, cb, rows_b, start_b)):
        row = rows[-1] if rows else start
        for token in ids[shared:].tolist():
            row = _step(row, (columns.costs(token),))
            rows.append(row)
    return rows_a, rows_b


def batch_layers_distance(ids_a: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """``D_l`` from one token-id sequence (La,) to each of ``others`` (token ids): (n,)."""
    return layers_distances([ids_a], others)[0]


def layers_distances(
    items: Sequence[np.ndarray], others: Sequence[np.ndarray], columns: Columns | None = None
) -> np.ndarray:
    """``D_l`` (Q, n) from each token-code sequence of ``items`` to each of ``others``.

    Row i of the DP table ``A[j] = d(a[:i], b[:j])`` for every pair with one sequence a at once,
    kept as ``U[j] = A[j] − i − j`` in an (H, n) array — column-major, so the running minimum
    runs over contiguous memory. With ``sub`` the substitution cost, the deletion and
    substitution recurrence ``B[j] = min(A_prev[j] + 1, A_prev[j−1] + sub(a_i, b_j))``,
    ``B[0] = i``, becomes ``S[j] = min(U_prev[j], U_prev[j−1] + sub − 2)``, ``S[0] = 0``;
    the insertions along the row, ``A[j] = min_{k≤j} B[k] + (j − k)``, become a running
    minimum ``U = cummin(S)``. Finally ``d(a, b) = U[len b] + len a + len b``.
    ``columns``: memo of column sets (speed only).
    """
    out = np.zeros((len(items), len(others)))
    if not others:
        return out
    dp = _columns(others, memo=columns)
    every = np.arange(len(others))
    for q, ids in enumerate(items):
        row = dp.start()
        for token in ids.tolist():
            row = _step(row, (dp.costs(token),))
        out[q] = row[dp.lengths, every] + (len(ids) + dp.lengths)
    return out


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
    parent: np.ndarray,
    children: Sequence[np.ndarray],
    others: Sequence[np.ndarray],
    columns: Columns | None = None,
    known_rows: KnownRows | None = None,
) -> np.ndarray:
    """``D_l`` (C, n) from each child to each of ``others``, reusing the parent's DP.

    A one-step morph changes a short block of the parent's main chain. With the parent's forward
    rows ``F_k = d(P[:k], ·)`` and backward rows ``G_k = d(P[k:], ·)`` (the DP on reversed
    sequences), a child ``C = P[:p] + block + P[La−s:]`` costs only ``len(block)`` DP steps:
    ``d(C, b) = min_j (F_p ⊕ block)[j] + G_{La−s}[len b − j]`` (Hirschberg's split). In the
    rows ``U`` of :func:`layers_distances` (``U_F`` after ``len C − s`` tokens, ``U_G`` after
    ``s``) that is ``len C + len b + min_j U_F[j] + U_G[len b − j]``. The parent's rows that
    were known as a child's (in ``known_rows``: DP rows of recent children (token codes, the
    others' signature) -> (forward rows 0..k, backward rows 0..k'); a tree search expands a
    child of the node it just expanded) are not computed again. ``columns``: memo of column
    sets. Both memos only save time.
    """
    n = len(others)
    if n == 0 or not children:
        return np.zeros((len(children), n))
    ends = [_common_ends(parent, child) for child in children]
    dp, reverse = _columns(others, memo=columns), _columns(others, reverse=True, memo=columns)
    signature = tuple(x.tobytes() for x in others)
    known = known_rows.get((parent.tobytes(), signature)) if known_rows is not None else None
    forward = list(known[0]) if known else [dp.start()]
    backward = list(known[1]) if known else [reverse.start()]
    # Only the rows some child needs: forward up to the longest common prefix, backward up to
    # the longest common suffix.
    more_forward, more_backward = _paired_rows(
        parent[len(forward) - 1 : max(p for p, _ in ends)],
        dp,
        forward[-1],
        parent[::-1][len(backward) - 1 : max(s for _, s in ends)],
        reverse,
        backward[-1],
    )
    forward += more_forward
    backward += more_backward
    lengths = dp.lengths
    j = np.arange(dp.padded.shape[0] + 1)[:, None]  # (H, 1)
    flip = lengths[None, :] - j  # (H, n): column of b[j:] in the reversed DP
    valid = flip >= 0
    flip = np.maximum(flip, 0)
    every = np.arange(n)[None, :]
    tails: dict[int, np.ndarray] = {}
    out = np.empty((len(children), n))
    for c, (child, (p, s)) in enumerate(zip(children, ends, strict=True)):
        rows = forward[: p + 1]
        for token in child[p : len(child) - s].tolist():
            rows.append(_step(rows[-1], (dp.costs(token),)))
        row = rows[-1]
        # The child's own rows so far, for when it is expanded in its turn.
        if known_rows is not None:
            known_rows.put((child.tobytes(), signature), (rows, backward[: s + 1]))
        if s not in tails:  # U_G[len b − j], (H, n)
            tails[s] = np.where(valid, backward[s][flip, every], np.inf)
        out[c] = (row + tails[s]).min(axis=0) + (len(child) + lengths)
    return out


class _SkipColumns:
    """Skip sets as padded columns: ``counts`` (n,), and each entry of the (n, Mb) padding as an
    index into ``distinct`` (U, 3), the distinct skips among them (padding reads row 0)."""

    def __init__(self, others: Sequence[np.ndarray]) -> None:
        padded, self.counts = _pad(others, 3, 0.0)  # (n, Mb, 3)
        self.width = padded.shape[1]
        flat = padded.reshape(-1, 3)
        # One number per skip (u, δ are whole numbers >= 0, the type is 0 or 1).
        keys = (flat[:, 0] * (flat[:, 1].max(initial=0.0) + 1.0) + flat[:, 1]) * 2.0 + flat[:, 2]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        self.distinct = flat[first]
        self.index = inverse.reshape(padded.shape[:2])

    def costs(self, sa: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Pair costs (m, k, Mb) of skips ``sa`` (m, 3) against the sets ``rows`` (k,)."""
        return np.take(_pair_costs(sa, self.distinct), self.index[rows], axis=1)


def _pair_costs(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Pair costs (m, M) of skips ``sa`` (m, 3) against skips ``sb`` (M, 3).

    ``u`` and ``δ`` are whole numbers, so the denominator is 0 (only for two skips at (0, 0),
    whose numerator is 0 too: cost 0) or at least 1.
    """
    ua, da, ta = (sa[:, c, None] for c in range(3))  # (m, 1)
    ub, db, tb = (sb[None, :, c] for c in range(3))  # (1, M)
    num = np.abs(ua - ub) + np.abs(da - db)
    den = np.maximum(ua, ub) + np.maximum(da, db)
    return np.where(ta == tb, num / np.maximum(den, 1.0), 1.0)


def _skip_costs(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Pair costs (n, m, Mb) of skips ``sa`` (m, 3) against padded ``sb`` (n, Mb, 3)."""
    return _pair_costs(sa, sb.reshape(-1, 3)).reshape(len(sa), *sb.shape[:2]).transpose(1, 0, 2)


def _best_two(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """min over i ≠ j of first[:, i] + second[:, j], for (k, M) arrays (inf marks padding)."""
    total = first[:, :, None] + second[:, None, :]  # (k, M, M)
    diagonal = np.arange(first.shape[1])
    total[:, diagonal, diagonal] = np.inf
    return total.min(axis=(1, 2))


def batch_skips_distance(sa: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """``D_s`` from one skip set (m, 3) to each of ``others``: (n,)."""
    return skips_distances([sa], others)[0]


def skips_distances(
    items: Sequence[np.ndarray], others: Sequence[np.ndarray], memo: Columns | None = None
) -> np.ndarray:
    """``D_s`` (Q, n) from each skip set of ``items`` (m, 3) to each of ``others``.

    The optimal assignment is closed-form when either set has one or two skips (vectorised);
    larger pairs go through ``linear_sum_assignment`` one by one. ``memo``: of column sets.
    """
    out = np.zeros((len(items), len(others)))
    if not others:
        return out
    if memo is None:
        columns = _SkipColumns(others)
    else:
        key = ("skips", tuple(x.tobytes() for x in others))
        columns = memo.get_or(key, lambda: _SkipColumns(others))
    for q, sa in enumerate(items):
        out[q] = _skips_row(sa, columns)
    return out


def _skips_row(sa: np.ndarray, columns: _SkipColumns) -> np.ndarray:
    m, counts = len(sa), columns.counts
    out = np.abs(counts - m).astype(np.float64)  # unmatched skips cost 1 each
    both = np.flatnonzero((counts > 0) & (m > 0))
    if len(both) == 0:
        return out
    cb = counts[both]
    costs = columns.costs(sa, both)  # (m, k, Mb)
    costs[:, np.arange(columns.width)[None, :] >= cb[:, None]] = np.inf  # padding
    if m == 1:
        out[both] += costs[0].min(axis=1)
        return out
    one, two = cb == 1, cb == 2
    out[both[one]] += costs[:, one, 0].min(axis=0)
    if two.any():
        out[both[two]] += _best_two(costs[:, two, 0].T, costs[:, two, 1].T)
    rest = np.flatnonzero(cb >= 3)
    if m == 2:
        out[both[rest]] += _best_two(costs[0, rest], costs[1, rest])
        return out
    # Larger pairs: an optimal assignment each, then the matched costs summed in row order, as
    # ``block[rows, cols].sum()`` would (grouped by the number of matches: one sum per group).
    matched: dict[int, tuple[list[int], list[np.ndarray], list[np.ndarray]]] = {}
    for index, width in zip(rest.tolist(), cb[rest].tolist(), strict=True):
        rows, cols = linear_sum_assignment(costs[:, index, :width])
        group = matched.setdefault(len(rows), ([], [], []))
        group[0].append(index)
        group[1].append(rows)
        group[2].append(cols)
    for indices, rows, cols in matched.values():
        pairs = np.array(indices)
        terms = costs[np.array(rows), pairs[:, None], np.array(cols)]  # (k', matches)
        out[both[pairs]] += terms.sum(axis=1)
    return out


# ----------------------------------------------------------------------------- the cache

_Many = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], np.ndarray]


class _RowCache:
    """Symmetric distances between items keyed by signature, stored as rows over column ids.

    Rows are float32 arrays indexed by an interned column id, NaN where unknown; a query for a
    (queries × columns) block gathers, computes only the NaN entries (batched along whichever
    side is shorter), and stores them. Rows are LRU-evicted; this is only a cache.
    ``compute(items, others) -> (len(items), len(others))``.

    Thread-safe: a block is read and filled under the cache's lock (rows are filled in place
    and column ids are handed out by count, so two threads must not interleave there).
    ``hits`` / ``misses`` count the pairs asked for that were known / had to be computed.
    """

    def __init__(self, compute: _Many, max_rows: int) -> None:
        # Rounded so that which side a pair was batched on (float summation order) never shows.
        self._compute: _Many = lambda items, others: np.round(compute(items, others), 8)
        self._columns: dict[bytes, int] = {}
        self._rows: dict[bytes, np.ndarray] = {}  # in least-recently-used order
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self.computed = 0  # pairs computed (for benchmarks)
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._columns.clear()
        self._rows.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.hits, self.misses, len(self._rows), self._max_rows)

    def _row(self, key: bytes, size: int) -> np.ndarray:
        row = self._rows.pop(key, None)
        if row is None:
            row = np.full(max(size, 16), np.nan, np.float32)
            while len(self._rows) >= self._max_rows:
                del self._rows[next(iter(self._rows))]
        elif len(row) < size:
            grown = np.full(max(size, 2 * len(row)), np.nan, np.float32)
            grown[: len(row)] = row
            row = grown
        self._rows[key] = row  # the most recent
        return row

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
        with self._lock:
            return self._block(queries, columns, many)

    def _block(
        self,
        queries: Sequence[tuple[bytes, np.ndarray]],
        columns: Sequence[tuple[bytes, np.ndarray]],
        many: _Many | None,
    ) -> np.ndarray:
        if len(self._columns) > 200_000:
            self._clear()
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
        if np.isnan(out).any():
            self._mirror(query_keys, columns, col_ids, out)
        missing_q, missing_c = np.nonzero(np.isnan(out))
        self.misses += len(missing_q)
        self.hits += out.size - len(missing_q)
        if len(missing_q):
            if many is not None and len(set(missing_q.tolist())) > 1:
                self._fill_many(
                    many, query_keys, query_items, col_items, columns, missing_q, missing_c, out
                )
            else:
                self._fill(query_keys, query_items, col_items, columns, np.isnan(out))
            size = len(self._columns)
            for q in sorted(set(missing_q.tolist())):
                out[q] = self._row(query_keys[q], size)[col_ids]
        index = {key: i for i, key in enumerate(query_keys)}
        return out[[index[key] for key, _ in queries]]

    def _mirror(
        self,
        query_keys: list[bytes],
        columns: Sequence[tuple[bytes, np.ndarray]],
        col_ids: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """Fill unknown entries of ``out`` that need no computing, and store them in the query's
        row: an item against itself is exactly 0 (the DP and the assignment follow zero-cost
        diagonals), and an entry the column item's own row knows is read from there (d is
        symmetric). A new observation's row is known from when it was a candidate; its column
        in every other row is filled from there."""
        ids = np.array([self._columns.get(key, -1) for key in query_keys], np.intp)
        if not (ids >= 0).any():
            return
        position = {key: q for q, key in enumerate(query_keys)}
        size = len(self._columns)
        for c in np.flatnonzero(np.isnan(out).any(axis=0)).tolist():
            itself = position.get(columns[c][0])
            if itself is not None and np.isnan(out[itself, c]):
                out[itself, c] = 0.0
                self._row(query_keys[itself], size)[col_ids[c]] = 0.0
            row = self._rows.get(columns[c][0])
            if row is None:
                continue
            lacking = np.flatnonzero(np.isnan(out[:, c]) & (ids >= 0) & (ids < len(row)))
            values = row[ids[lacking]]
            known = ~np.isnan(values)
            for q, value in zip(lacking[known].tolist(), values[known].tolist(), strict=True):
                out[q, c] = value
                self._row(query_keys[q], size)[col_ids[c]] = value

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
        for key, value in zip(keys, values, strict=True):
            row = self._row(key, size)
            unknown = np.isnan(row[ids])
            row[ids[unknown]] = value[unknown]
        self.computed += len(rows) * len(col_keys)

    def _fill(
        self,
        query_keys: list[bytes],
        query_items: dict[bytes, np.ndarray],
        col_items: dict[bytes, np.ndarray],
        columns: Sequence[tuple[bytes, np.ndarray]],
        missing: np.ndarray,
    ) -> None:
        """Compute the pairs ``missing`` (Q, n) marks, batched along the side with fewer items."""
        first: dict[bytes, int] = {}  # column key -> its first column (keys may repeat)
        for c, (key, _) in enumerate(columns):
            first.setdefault(key, c)
        col_keys = list(first)
        lacking = missing[:, list(first.values())]  # (Q, distinct columns)
        size = len(self._columns)
        # Each pair is computed with the same item first as one call per item would (items
        # lacking the same others share a call: a pair's value does not depend on its batch).
        if np.count_nonzero(lacking.any(axis=0)) <= np.count_nonzero(lacking.any(axis=1)):
            for cs, qs in _same_others(lacking.T):
                values = self._compute(
                    [col_items[col_keys[c]] for c in cs], [query_items[query_keys[q]] for q in qs]
                )
                ids = [self._columns[col_keys[c]] for c in cs]
                for q, value in zip(qs, values.T, strict=True):
                    self._row(query_keys[q], size)[ids] = value
        else:
            for qs, cs in _same_others(lacking):
                values = self._compute(
                    [query_items[query_keys[q]] for q in qs], [col_items[col_keys[c]] for c in cs]
                )
                ids = [self._columns[col_keys[c]] for c in cs]
                for q, value in zip(qs, values, strict=True):
                    self._row(query_keys[q], size)[ids] = value
        self.computed += int(lacking.sum())


def _same_others(lacking: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Items (rows of ``lacking``) that lack some others, grouped by the same others lacked: a
    list of (items, others) index lists."""
    groups: dict[bytes, list[int]] = {}
    for i in np.flatnonzero(lacking.any(axis=1)).tolist():
        groups.setdefault(lacking[i].tobytes(), []).append(i)
    return [(items, np.flatnonzero(lacking[items[0]]).tolist()) for items in groups.values()]


class DistanceCache:
    """``D_l`` and ``D_s`` blocks between descriptors, cached by main-chain / skip signature,
    with the memos of the batched DP (column sets, the DP rows of expanded nodes)."""

    def __init__(self, max_rows: int = 8192) -> None:
        self.columns: Columns = LRU(6)
        self.known_rows: KnownRows = LRU(32)
        self.layers = _RowCache(
            lambda items, others: layers_distances(items, others, self.columns), max_rows
        )
        self.skips = _RowCache(
            lambda items, others: skips_distances(items, others, self.columns), max_rows
        )

    def clear(self) -> None:
        self.layers.clear()
        self.skips.clear()
        self.known_rows.clear()
        self.columns.clear()

    def stats(self) -> dict[str, CacheStats]:
        return {
            "distance_layers": self.layers.stats(),
            "distance_skips": self.skips.stats(),
            "distance_columns": self.columns.stats(),
            "distance_parent_rows": self.known_rows.stats(),
        }

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

            def many(qs: Sequence[np.ndarray], cs: Sequence[np.ndarray]) -> np.ndarray:
                return layers_distances_from_parent(ids, qs, cs, self.columns, self.known_rows)

        dl = self.layers.block(
            [(d.layer_key, d.token_ids) for d in queries],
            [(d.layer_key, d.token_ids) for d in columns],
            many,
        )
        ds = self.skips.block(
            [(d.skip_key, d.skips) for d in queries], [(d.skip_key, d.skips) for d in columns]
        )
        return dl.astype(np.float64), ds.astype(np.float64)
