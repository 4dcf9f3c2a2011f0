"""One SearchCache shared by many threads gives exactly what a fresh cache gives on one thread.

Many searches, each a chain of morphs from its own seed that meets layer widths no other search
has (new tokens), are worked through concurrently by 12 threads sharing one cache: parse the
stored architectures, distance blocks between them and from a parent's children (the parent's
DP path), the GP's predictions, and a proposal. The Python switch interval is made tiny so the
threads interleave inside the cache code. Every result must equal, bit for bit, the one a
single thread gets with a fresh cache; and every layer distance must equal the edit distance
computed from the tokens' values alone (no ids, no cache), so a token table corrupted for the
whole process (as the old unlocked one could be) cannot agree with itself and pass.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph, build_graph
from morphnas.core.layers import LAYER_KINDS, MAX_UNITS, Layer
from morphnas.core.morphs import Wider, neighbourhood
from morphnas.core.records import SearchConfig
from morphnas.search import propose
from morphnas.search.cache import SearchCache
from morphnas.search.descriptors import (
    ATTRS,
    Descriptor,
    decode_tokens,
    descriptor,
    encode_tokens,
    kind_id,
    parse,
)
from morphnas.search.surrogate import Surrogate
from tests.search import synthetic

THREADS = 12
SEARCHES = 12
ROUNDS = 2  # each search is worked through this many times, in shuffled order
MLPS, MLP_DEPTH = 8, 24


@dataclass(frozen=True)
class Search:
    config: SearchConfig
    graphs: list[Graph]
    texts: list[str]  # as stored
    mlps: list[Graph]  # random deep MLPs: every layer a width no other graph has


@dataclass(frozen=True)
class Result:
    mlp_layers: np.ndarray  # (m, m) between the search's MLPs
    layers: np.ndarray  # (n, n) between the search's graphs
    skips: np.ndarray
    child_layers: np.ndarray  # (c, n) from the last graph's children
    child_skips: np.ndarray
    mean: np.ndarray  # GP posterior at the children
    std: np.ndarray
    proposal: tuple[str | None, str]  # (parent trial id, content hash)


def _widened(graph: Graph, rng: np.random.Generator, steps: int) -> list[Graph]:
    """A chain of widenings of main-chain conv/dense layers by odd amounts (new widths)."""
    chain = []
    for _ in range(steps):
        names = [n for n in graph.main_chain[:-1] if graph.by_name[n].kind in ("conv", "dense")]
        for k in rng.permutation(len(names)).tolist():
            try:
                graph = Wider(names[k], int(rng.integers(1, 40))).apply(graph)
            except InvalidArgumentError:
                continue  # this layer cannot grow alone: another one
            chain.append(graph)
            break
    return chain


def _mlp(widths: list[int]) -> Graph:
    layers, previous = [], "input"
    for k, width in enumerate(widths):
        layers.append(Layer(f"d{k}", "dense", (previous,), units=width))
        previous = f"d{k}"
    return build_graph((4,), layers)


def _searches() -> list[Search]:
    searches = []
    widths = np.random.default_rng(0).permutation(np.arange(100, MAX_UNITS))  # all distinct
    for i in range(SEARCHES):
        # Seed widths differ per search, so each meets its own tokens.
        cfg = synthetic.config(seed=i, seed_width=9 + 2 * i, seed_depth=1 + i % 2)
        graphs = synthetic.history(cfg, 4, rng_seed=100 + i)
        graphs += _widened(graphs[-1], np.random.default_rng(i), 16)
        mine = widths[i * MLPS * MLP_DEPTH : (i + 1) * MLPS * MLP_DEPTH].reshape(MLPS, MLP_DEPTH)
        mlps = [_mlp(row.tolist()) for row in mine]
        searches.append(Search(cfg, graphs, [g.to_json() for g in graphs], mlps))
    return searches


def _work(search: Search, cache: SearchCache) -> Result:
    mlps = [descriptor(g, cache=cache) for g in search.mlps]  # new tokens, all threads at once
    mlp_layers, _ = cache.distances.block(mlps, mlps)
    descs = [descriptor(g, cache=cache) for g in search.graphs]
    parsed = [parse(text, cache) for text in search.texts]
    assert [d.key for _, d in parsed] == [d.key for d in descs]
    layers, skips = cache.distances.block(descs, descs)
    parent = parsed[-1][0]
    children = [op.apply(parent) for op in neighbourhood(parent)[::5][:12]]
    kids = [descriptor(child, parent, cache) for child in children]
    child_layers, child_skips = cache.distances.block(kids, descs, descs[-1])
    scores = np.array([synthetic.score(g) for g in search.graphs])
    model = Surrogate(descs, scores, np.ones(len(descs)), cache)
    mean, std = model.predict(kids, descs[-1])
    snapshot = synthetic.snapshot(search.config, search.graphs)
    [found] = propose(snapshot, 1, time_budget_s=600.0, max_expansions=3, cache=cache)
    proposal = (found.parent_id, found.graph.content_hash)
    return Result(mlp_layers, layers, skips, child_layers, child_skips, mean, std, proposal)


def _value_distance(a: Descriptor, b: Descriptor) -> float:
    """``D_l`` from the token values alone (the definition in morphnas.search.distance)."""
    kinds = list(LAYER_KINDS)

    def sub(x: tuple[float, ...], y: tuple[float, ...]) -> float:
        if x[0] != y[0]:
            return 1.0
        used = [c for c, attr in enumerate(ATTRS) if attr in LAYER_KINDS[kinds[int(x[0])]].attrs]
        rel = [abs(x[1 + c] - y[1 + c]) / max(x[1 + c], y[1 + c]) for c in used]
        return max(rel) if rel else 0.0

    ta, tb = [tuple(t) for t in a.tokens.tolist()], [tuple(t) for t in b.tokens.tolist()]
    costs = {(x, y): sub(x, y) for x in set(ta) for y in set(tb)}
    row = list(range(len(tb) + 1))
    for i, x in enumerate(ta, 1):
        new = [float(i)]
        for j, y in enumerate(tb, 1):
            new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + costs[x, y]))
        row = new
    return float(row[-1])


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    """Threads switch every few microseconds, inside the cache code as well."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_threads_sharing_one_cache_get_what_one_thread_with_a_fresh_cache_gets(
    tiny_switch_interval: None,
) -> None:
    searches = _searches()
    shared = SearchCache()
    jobs = [i for i in range(SEARCHES) for _ in range(ROUNDS)]
    random.Random(0).shuffle(jobs)
    start = threading.Barrier(THREADS)  # every thread meets its first new tokens at once

    def run(mine: list[int]) -> list[tuple[int, Result]]:
        start.wait()
        return [(i, _work(searches[i], shared)) for i in mine]

    with ThreadPoolExecutor(THREADS) as pool:
        parts = [pool.submit(run, jobs[t::THREADS]) for t in range(THREADS)]
        threaded = [item for part in parts for item in part.result()]
    assert len(threaded) == len(jobs)

    alone = [_work(search, SearchCache()) for search in searches]
    for i, got in threaded:
        want = alone[i]
        for field in (
            "mlp_layers",
            "layers",
            "skips",
            "child_layers",
            "child_skips",
            "mean",
            "std",
        ):
            assert np.array_equal(getattr(got, field), getattr(want, field)), (i, field)
        assert got.proposal == want.proposal, i

    for i, search in enumerate(searches):
        for graphs, got in ((search.mlps, alone[i].mlp_layers), (search.graphs, alone[i].layers)):
            descs = [descriptor(g) for g in graphs]
            by_value = np.array([[_value_distance(a, b) for b in descs] for a in descs])
            assert np.allclose(got, by_value, atol=1e-5), i
    stats = shared.stats()
    assert stats["distance_layers"].hits > 0 and stats["parsed"].hits > 0
    assert all(s.entries <= s.capacity for s in stats.values())


def test_token_ids_do_not_depend_on_which_thread_met_them_first(
    tiny_switch_interval: None,
) -> None:
    """8 threads encode thousands of tokens never seen before, at once: each id stands for its
    own token, and is the id one thread meeting them in another order gives."""
    rng = np.random.default_rng(1)
    count = 2000
    batches = [
        np.column_stack(
            [
                np.full(count, kind_id("dense")),
                rng.permutation(np.arange(1, MAX_UNITS + 1))[:count],
                np.zeros(count),
                np.zeros(count),
            ]
        ).astype(np.float64)
        for _ in range(8)
    ]
    start = threading.Barrier(len(batches))

    def encode(tokens: np.ndarray) -> np.ndarray:
        start.wait()
        return encode_tokens(tokens)

    with ThreadPoolExecutor(len(batches)) as pool:
        threaded = list(pool.map(encode, batches))
    for tokens, ids in zip(batches, threaded, strict=True):
        assert np.array_equal(decode_tokens(ids), tokens)
        order = rng.permutation(count)
        assert np.array_equal(encode_tokens(tokens[order]), ids[order])
