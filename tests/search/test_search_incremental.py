"""Incremental binding equals full recomputation, whatever the order nodes arrive in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mmbind.binding.incremental import IncrementalBinder, NodeId, bind_full
from mmbind.errors import ConfigError, DataError, ShapeError, UnknownNodeError

MODS: dict[NodeId, set[str]] = {
    "A": {"acc", "skel"},
    "B": {"acc", "gyro"},
    "C": {"skel", "gyro"},
    "D": {"acc", "gyro"},
    "E": {"acc"},
}


def by_modality(a: NodeId, b: NodeId) -> bool:
    """Bind when one node holds a modality the other lacks."""
    return a != b and MODS[a] != MODS[b]


def int_nodes(seed: int, sizes: dict[NodeId, int], d: int = 4) -> dict[NodeId, NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    return {n: rng.integers(-1, 2, size=(s, d)).astype(np.float32) for n, s in sizes.items()}


def assert_same(inc: IncrementalBinder, ref: dict[NodeId, object]) -> None:
    got = inc.all_bindings()
    assert set(got) == set(ref)
    for node, table in got.items():
        assert table.equals(ref[node]), node  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 25), min_size=2, max_size=5),
    k=st.integers(1, 3),
    seed=st.integers(0, 2**31),
    data=st.data(),
    use_modalities=st.booleans(),
)
def test_any_arrival_order_equals_full_recomputation(
    sizes: list[int], k: int, seed: int, data: st.DataObject, use_modalities: bool
) -> None:
    names: list[NodeId] = ["A", "B", "C", "D", "E"][: len(sizes)]
    embs = int_nodes(seed, dict(zip(names, sizes, strict=True)))
    order = data.draw(st.permutations(names))
    comp = by_modality if use_modalities else None
    inc = IncrementalBinder(k, complementary=comp, block_size=(4, 7), threads=2)
    for node in order:
        inc.add_node(node, embs[node], normalized=True)
    assert_same(inc, bind_full(embs, k, complementary=comp, normalized=True))  # type: ignore[arg-type]


def test_equality_after_each_arrival_on_float_data() -> None:
    rng = np.random.default_rng(0)
    embs = {
        i: rng.standard_normal((n, 16)).astype(np.float32) for i, n in enumerate([80, 50, 120, 30])
    }
    inc = IncrementalBinder(2)
    seen: dict[NodeId, NDArray[np.float32]] = {}
    for node in [2, 0, 3, 1]:
        inc.add_node(node, embs[node])
        seen[node] = embs[node]
        ref = bind_full(seen, 2)
        for n, table in inc.all_bindings().items():
            np.testing.assert_array_equal(table.idx, ref[n].idx)
            np.testing.assert_array_equal(table.partner_ids(), ref[n].partner_ids())
            np.testing.assert_allclose(table.sims, ref[n].sims, atol=1e-6)


def test_only_new_pairs_are_computed() -> None:
    embs = int_nodes(1, {"A": 30, "B": 20, "C": 10})
    inc = IncrementalBinder()
    inc.add_node("A", embs["A"])
    assert inc.pairs_computed == 0
    inc.add_node("B", embs["B"])
    assert inc.pairs_computed == 30 * 20
    inc.add_node("C", embs["C"])
    assert inc.pairs_computed == 30 * 20 + 10 * (30 + 20)


def test_ties_break_by_node_id_then_index() -> None:
    same = np.ones((3, 2), np.float32)
    inc = IncrementalBinder(2)
    inc.add_node("z", same)
    inc.add_node("m", same)
    inc.add_node("a", same[:1])
    t = inc.bindings("z")
    np.testing.assert_array_equal(t.partner_ids(), [["a", "m"]] * 3)
    np.testing.assert_array_equal(t.idx, [[0, 0]] * 3)
    t = inc.bindings("a")
    np.testing.assert_array_equal(t.partner_ids(), [["m", "m"]])
    np.testing.assert_array_equal(t.idx, [[0, 1]])


def test_missing_partners_are_marked() -> None:
    inc = IncrementalBinder(3)
    inc.add_node(1, np.eye(2, dtype=np.float32))
    t = inc.bindings(1)
    assert np.all(t.sims == -np.inf) and np.all(t.idx == -1) and np.all(t.partner == -1)
    inc.add_node(2, np.eye(2, dtype=np.float32)[:1])
    t = inc.bindings(1)
    np.testing.assert_array_equal(t.idx, [[0, -1, -1], [0, -1, -1]])
    assert t.partner_ids()[0, 0] == 2 and t.partner_ids()[0, 1] is None


def test_float16_storage() -> None:
    rng = np.random.default_rng(2)
    embs = {n: rng.standard_normal((40, 32)) for n in "ABC"}
    inc = IncrementalBinder(dtype=np.float16)
    for n in "CAB":
        inc.add_node(n, embs[n])
    assert inc.embeddings("A").dtype == np.float16
    ref = bind_full(embs, dtype=np.float16)
    for n in "ABC":
        assert inc.bindings(n).equals(ref[n]) or np.allclose(
            inc.bindings(n).sims, ref[n].sims, atol=1e-6
        )


def test_errors() -> None:
    inc = IncrementalBinder()
    inc.add_node("A", np.ones((2, 3)))
    with pytest.raises(ConfigError):
        inc.add_node("A", np.ones((2, 3)))
    with pytest.raises(ShapeError):
        inc.add_node("B", np.ones((2, 4)))
    with pytest.raises(ShapeError):
        inc.add_node("B", np.ones(3))
    with pytest.raises(DataError):
        inc.add_node("B", np.full((2, 3), np.nan))
    with pytest.raises(UnknownNodeError):
        inc.bindings("nope")
    with pytest.raises(ConfigError):
        IncrementalBinder(0)
    with pytest.raises(ConfigError):
        IncrementalBinder(dtype=np.int8)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 20), min_size=3, max_size=5),
    k=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
def test_a_binder_from_a_full_binding_goes_on_as_if_it_had_bound_each_node(
    sizes: list[int], k: int, seed: int
) -> None:
    # Prepare: every node but the last bound in one call
    names: list[NodeId] = ["A", "B", "C", "D", "E"][: len(sizes)]
    embs = int_nodes(seed, dict(zip(names, sizes, strict=True)))
    first = {n: embs[n] for n in names[:-1]}
    tables = bind_full(first, k, complementary=by_modality, normalized=True)
    # Execute: a binder from those tables (nothing computed), then the last node joins
    inc = IncrementalBinder.from_tables(
        first, tables, k, complementary=by_modality, normalized=True
    )
    seeded = inc.pairs_computed
    inc.add_node(names[-1], embs[names[-1]], normalized=True)
    # Assert: the full binding of every node, with only the newcomer's pairs computed
    assert_same(inc, bind_full(embs, k, complementary=by_modality, normalized=True))  # type: ignore[arg-type]
    new = sizes[-1] * sum(len(embs[o]) for o in names[:-1] if by_modality(names[-1], o))
    assert (seeded, inc.pairs_computed) == (0, new)


def test_tables_must_fit_the_nodes_they_bind() -> None:
    embs = int_nodes(0, {"A": 3, "B": 2})
    tables = bind_full(embs, 1, normalized=True)
    with pytest.raises(UnknownNodeError, match="without embeddings"):
        IncrementalBinder.from_tables({"A": embs["A"]}, tables, normalized=True)
    with pytest.raises(ShapeError, match="expected"):
        IncrementalBinder.from_tables(embs, tables, 2, normalized=True)
    short = {"A": embs["A"], "B": embs["B"][:1]}
    with pytest.raises(ShapeError, match="past a partner"):
        IncrementalBinder.from_tables(short, {"A": tables["A"]}, normalized=True)
