"""Edit distance: hand-made pairs with known values, metric sanity, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from morphnas.core.graph import build_graph
from morphnas.core.layers import Layer
from morphnas.core.morphs import AddSkip, Wider
from morphnas.core.seeds import seed_graph
from morphnas.search.descriptors import descriptor
from morphnas.search.distance import (
    DistanceCache,
    batch_layers_distance,
    edit_distance,
    layer_distance,
    layers_distance,
    skip_pair_distance,
    skips_distance,
)
from tests.search import synthetic


def dense(units: int) -> Layer:
    return Layer("d", "dense", ("input",), units=units)


def conv(units: int, kernel: int, stride: int) -> Layer:
    return Layer("c", "conv", ("input",), units=units, kernel=kernel, stride=stride)


def test_dense_width_counts() -> None:
    assert layer_distance(dense(64), dense(128)) == pytest.approx(0.5)


def test_conv_example_from_autokeras() -> None:
    assert layer_distance(conv(5, 3, 2), conv(1, 1, 1)) == pytest.approx(4 / 5)  # the largest


def test_kinds_without_attributes_and_different_kinds() -> None:
    relu = Layer("r", "relu", ("input",))
    bn = Layer("b", "bn", ("input",))
    assert layer_distance(relu, relu) == 0.0
    assert layer_distance(relu, bn) == 1.0
    assert layer_distance(dense(8), conv(8, 3, 1)) == 1.0


def test_skip_pair_value() -> None:
    # (|2 - 4| + |3 - 1|) / (max(2, 4) + max(3, 1)) = 4 / 7
    assert skip_pair_distance((2, 3, 0), (4, 1, 0)) == pytest.approx(4 / 7)
    assert skip_pair_distance((2, 3, 0), (2, 3, 1)) == 1.0
    assert skip_pair_distance((2, 3, 1), (2, 3, 1)) == 0.0


def mlp(widths: list[int]) -> object:
    layers, previous = [], "input"
    for i, w in enumerate(widths):
        layers.append(Layer(f"d{i}", "dense", (previous,), units=w))
        previous = f"d{i}"
    return build_graph((4,), layers)


def test_layer_sequence_distance_by_hand() -> None:
    a = descriptor(mlp([64, 32, 10]))  # type: ignore[arg-type]
    b = descriptor(mlp([128, 10]))  # type: ignore[arg-type]
    # delete the 32 (1) + substitute 64→128 (0.5), 10→10 (0)
    assert layers_distance(a, b) == pytest.approx(1.5)


def test_identical_is_zero_and_widening_is_not() -> None:
    seed = seed_graph(synthetic.DIGITS, 10, 16, 2)
    assert edit_distance(seed, seed) == 0.0
    hidden = next(layer.name for layer in seed.layers[:-1] if layer.kind in ("conv", "dense"))
    wider = Wider(hidden, 8).apply(seed)
    assert edit_distance(seed, wider) > 0.0


def test_skip_distance_of_a_skip_pair() -> None:
    seed = seed_graph(synthetic.DIGITS, 10, 16, 2)
    chain = seed.main_chain
    one = AddSkip(chain[0], chain[3]).apply(seed)
    two = AddSkip(chain[0], chain[3]).apply(AddSkip(chain[4], chain[6]).apply(seed))
    d1, d2 = descriptor(one), descriptor(two)
    assert len(d1.skips) == 1 and len(d2.skips) == 2
    # one skip matches exactly, the other is unmatched
    assert skips_distance(d1, d2) == pytest.approx(1.0)
    assert skips_distance(descriptor(seed), d2) == pytest.approx(2.0)


def _brute_force_layers(a: np.ndarray, b: np.ndarray) -> float:
    table = np.zeros((len(a) + 1, len(b) + 1))
    table[:, 0] = np.arange(len(a) + 1)
    table[0, :] = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            sub = float(batch_layers_distance(a[i - 1 : i], [b[j - 1 : j]])[0])
            table[i, j] = min(table[i - 1, j] + 1, table[i, j - 1] + 1, table[i - 1, j - 1] + sub)
    return float(table[-1, -1])


@pytest.fixture(scope="module")
def graphs() -> list:
    return synthetic.history(synthetic.config(), 40, rng_seed=3)


def test_dp_matches_brute_force_and_is_symmetric(graphs: list) -> None:
    rng = np.random.default_rng(0)
    for _ in range(15):
        a, b = (descriptor(graphs[int(i)]) for i in rng.integers(len(graphs), size=2))
        forward = layers_distance(a, b)
        assert forward == pytest.approx(_brute_force_layers(a.token_ids, b.token_ids))
        assert forward == pytest.approx(layers_distance(b, a))
        assert skips_distance(a, b) == pytest.approx(skips_distance(b, a))


def test_cache_block_matches_direct_and_survives_clearing(graphs: list) -> None:
    cache = DistanceCache()
    descs = [descriptor(g) for g in graphs]
    dl, ds = cache.block(descs, descs)
    assert np.allclose(dl, dl.T) and np.allclose(ds, ds.T)
    assert np.all(np.diag(dl) == 0) and np.all(np.diag(ds) == 0)
    for i, j in [(0, 5), (7, 3), (12, 30)]:
        assert dl[i, j] == pytest.approx(layers_distance(descs[i], descs[j]), abs=1e-5)
        assert ds[i, j] == pytest.approx(skips_distance(descs[i], descs[j]), abs=1e-5)
    # Warm (a sub-block, other orientation) and cold again give the same numbers.
    warm = cache.block(descs[10:], descs[:10])
    cache.clear()
    cold = cache.block(descs[10:], descs[:10])
    assert np.array_equal(warm[0], cold[0]) and np.array_equal(warm[1], cold[1])
    assert np.array_equal(warm[0], dl[10:, :10])


def test_children_reuse_the_parents_dp(graphs: list) -> None:
    from morphnas.core.morphs import neighbourhood
    from morphnas.search.distance import layers_distances_from_parent

    others = [descriptor(g).token_ids for g in graphs]
    for parent in graphs[::10]:
        children = [op.apply(parent) for op in neighbourhood(parent)[::7]]
        ids = [descriptor(c).token_ids for c in children]
        incremental = layers_distances_from_parent(descriptor(parent).token_ids, ids, others)
        direct = np.array([batch_layers_distance(c, others) for c in ids])
        assert np.allclose(incremental, direct, atol=1e-9)


def test_vectorised_skip_matching_equals_hungarian() -> None:
    from scipy.optimize import linear_sum_assignment

    from morphnas.search.distance import _skip_costs, batch_skips_distance, skips_distances

    rng = np.random.default_rng(0)

    def skips(k: int) -> np.ndarray:
        return np.column_stack(
            [rng.integers(0, 20, k), rng.integers(1, 10, k), rng.integers(0, 2, k)]
        ).astype(float)

    def reference(a: np.ndarray, b: np.ndarray) -> float:
        if len(a) == 0 or len(b) == 0:
            return float(abs(len(a) - len(b)))
        cost = _skip_costs(a, b[None])[0]
        rows, cols = linear_sum_assignment(cost)
        return float(cost[rows, cols].sum() + abs(len(a) - len(b)))

    for _ in range(100):
        a = skips(int(rng.integers(0, 6)))
        others = [skips(int(rng.integers(0, 7))) for _ in range(12)]
        expected = [reference(a, b) for b in others]
        assert np.allclose(batch_skips_distance(a, others), expected, atol=1e-12)
    # Larger sets (either side the larger), several at once, and skips at (0, 0) (cost 0/0).
    for _ in range(30):
        items = [skips(int(rng.integers(0, 15))) for _ in range(3)]
        others = [skips(int(rng.integers(0, 15))) for _ in range(20)]
        items[0][:2, :2] = 0.0
        others[0][:1, :2] = 0.0
        expected = np.array([[reference(a, b) for b in others] for a in items])
        assert np.allclose(skips_distances(items, others), expected, atol=1e-12)


def test_the_running_minimum_equals_numpys() -> None:
    from morphnas.search.distance import _cummin

    rng = np.random.default_rng(1)
    for length in (8, 16, 40, 64):  # DP heights are whole blocks of rows
        x = rng.random((length, 5))
        assert np.array_equal(_cummin(x.copy()), np.minimum.accumulate(x, axis=0))


def test_a_childs_structural_key_from_its_parents_is_the_same(graphs: list) -> None:
    from morphnas.core.graph import Graph
    from morphnas.core.morphs import neighbourhood
    from morphnas.search.descriptors import structural_key

    for parent in graphs[::5]:
        for op in neighbourhood(parent)[::3]:
            child = op.apply(parent)
            fresh = Graph(child.input_shape, child.layers)  # no digests kept on it
            assert structural_key(child, parent) == structural_key(fresh)


def test_a_known_distance_is_read_back_from_the_other_side(graphs: list) -> None:
    cache = DistanceCache()
    descs = [descriptor(g) for g in graphs]
    first = cache.block(descs[:1], descs[1:])
    computed = cache.layers.computed + cache.skips.computed
    second = cache.block(descs[1:], descs[:1])  # their rows lack this column: read from its row
    assert cache.layers.computed + cache.skips.computed == computed
    assert np.array_equal(first[0].T, second[0]) and np.array_equal(first[1].T, second[1])
    cache.clear()
    cold = cache.block(descs[1:], descs[:1])
    assert np.array_equal(cold[0], second[0]) and np.array_equal(cold[1], second[1])


def test_a_child_expanded_after_its_parent_reuses_its_rows_exactly(graphs: list) -> None:
    from morphnas.core.morphs import neighbourhood
    from morphnas.search.distance import layers_distances_from_parent

    memo = DistanceCache()
    memos = (memo.columns, memo.known_rows)
    others = [descriptor(g).token_ids for g in graphs]
    for parent in graphs[::8]:
        children = [op.apply(parent) for op in neighbourhood(parent)[::9]]
        ids = [descriptor(c).token_ids for c in children]
        layers_distances_from_parent(descriptor(parent).token_ids, ids, others, *memos)
        for child in children[::2]:
            grandchildren = [
                descriptor(op.apply(child)).token_ids for op in neighbourhood(child)[::11]
            ]
            key = descriptor(child).token_ids
            warm = layers_distances_from_parent(key, grandchildren, others, *memos)
            memo.known_rows.clear()
            cold = layers_distances_from_parent(key, grandchildren, others, *memos)
            assert np.array_equal(warm, cold)
            layers_distances_from_parent(descriptor(parent).token_ids, ids, others, *memos)


def test_an_item_against_itself_is_exactly_zero(graphs: list) -> None:
    # The cache fills such entries with 0 without computing them.
    from morphnas.search.distance import layers_distances, skips_distances

    descs = [descriptor(g) for g in graphs]
    layers = layers_distances([d.token_ids for d in descs], [d.token_ids for d in descs])
    skips = skips_distances([d.skips for d in descs], [d.skips for d in descs])
    assert np.all(np.diag(layers) == 0.0) and np.all(np.diag(skips) == 0.0)


def test_cached_columns_take_tokens_newer_than_them() -> None:
    from morphnas.search.distance import layers_distances

    columns = DistanceCache().columns
    others = [descriptor(mlp([16, 8, 10])).token_ids, descriptor(mlp([32, 10])).token_ids]  # type: ignore[arg-type]
    layers_distances(others, others, columns)  # the columns are cached before the new token
    fresh = descriptor(mlp([12_345, 10])).token_ids  # type: ignore[arg-type]  # a new token
    warm = layers_distances([fresh], others, columns)
    columns.clear()
    assert np.array_equal(warm, layers_distances([fresh], others, columns))
    assert warm[0, 1] == pytest.approx(1 - 32 / 12_345)
