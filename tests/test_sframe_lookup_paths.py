"""The scalar ``find`` has three paths: exact buckets (every row boundary a multiple of 2^g:
one index, no search), bisect buckets (any other regular table), and the general path
(PCMASK rows, unsorted or overlapping tables).  All three must give the same row for every
PC of every linked corpus fixture, and agree with ``find_many``."""

from __future__ import annotations

import numpy as np
import pytest

from sframe_corpus import linked_fixtures
from sfunwind.sframe import SFrameTable, decode
from sfunwind.sframe import lookup as lookup_module

FIXTURES = [f for f in linked_fixtures() if f.sframe_version >= 2]


def _pcs(table: SFrameTable) -> list[int]:
    lo = int(table.fde_start.min()) - 8
    hi = int(table.fde_end.max()) + 8
    return list(range(lo, hi))


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda f: f.id)
def test_exact_bisect_and_general_paths_agree(fx, monkeypatch):
    raw, addr = fx.section()
    section = decode(raw, section_address=addr)
    exact = SFrameTable(section)
    pcs = _pcs(exact)
    rows_exact = [exact.find(pc) for pc in pcs]
    general = [exact._general_find(pc) for pc in pcs]

    monkeypatch.setattr(lookup_module, "_EXACT_BUCKETS_MAX", 0)  # force the bisect buckets
    bisect_table = SFrameTable(section)
    rows_bisect = [bisect_table.find(pc) for pc in pcs]
    assert not bisect_table._abs_exact

    assert rows_exact == rows_bisect == general
    many = exact.find_many(np.array(pcs, dtype=np.uint64))
    assert [bool(x) for x in many.found] == [r is not None for r in rows_exact]
    assert sum(r is not None for r in rows_exact) > 0


def test_aarch64_tables_use_exact_buckets():
    fx = next(f for f in FIXTURES if f.arch == "a64" and f.sframe_version == 3)
    raw, addr = fx.section()
    table = SFrameTable(decode(raw, section_address=addr))
    table.find(int(table.fde_start[0]))
    assert table._abs_exact and table._abs_shift >= 2  # 4-byte instructions: one bucket a row


@pytest.mark.parametrize("fx", [f for f in FIXTURES if f.sframe_version == 3], ids=lambda f: f.id)
def test_row_signature_hash_collisions_fall_back_to_exact_keys(fx, monkeypatch):
    """Rows are grouped by a 64-bit hash of their rules; when every row collides, the exact
    record keys must take over and give the same rows."""
    raw, addr = fx.section()
    section = decode(raw, section_address=addr)
    normal = SFrameTable(section)
    pcs = _pcs(normal)
    expected = [normal.find(pc) for pc in pcs]
    monkeypatch.setattr(lookup_module, "_row_hash",
                        lambda columns, n: np.zeros(n, dtype=np.uint64))
    colliding = SFrameTable(section)
    assert [colliding.find(pc) for pc in pcs] == expected
    assert len(colliding._protos) == len(normal._protos) > 1
