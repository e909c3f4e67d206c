"""Fuzzing decode / validate / dump / lookup: only SFrameFormatError may come out, no hang.

Inputs are mutations of valid sections (built with every feature, and the real vectors):
byte flips, overwritten header fields, truncation and extension — the shapes that reach deep
into the decoder rather than failing at the magic.  Beyond "no other exception", the two
independent table builders (object model and vectorised bytes) must agree on every
section that decodes, and re-encoding a decoded section must decode to the same thing.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfunwind.errors import SFrameFormatError
from sfunwind.sframe import (
    ABI,
    FDEKind,
    FDEType,
    SFrameFDE,
    SFrameFRE,
    SFrameSection,
    SFrameTable,
    decode,
    dump_json,
    dump_text,
    encode,
    flex_control,
    validate,
)

VECTORS = Path(__file__).parent / "data" / "sframe-vectors"


def _seeds() -> list[bytes]:
    seeds = [bytes(json.loads(p.read_text())["content"]) for p in sorted(VECTORS.glob("*.json"))]
    a64 = [SFrameFDE(0x1000, 0x40, pauth_key=1, fres=[
        SFrameFRE(0, words=[0]), SFrameFRE(4, words=[0], mangled_ra=True),
        SFrameFRE(8, words=[32, -24, -32], mangled_ra=True),
        SFrameFRE(0x10, base_reg=0, words=[32, -24, -32]), SFrameFRE(0x3C, words=[])]),
        SFrameFDE(0x1100, 0x20000, fres=[SFrameFRE(0, words=[0]),
                                          SFrameFRE(0x12345, words=[70016, -70008, -70016])]),
        SFrameFDE(0x1048, 8, signal=True)]
    x86 = [SFrameFDE(0x2000, 0x40, fde_type=FDEType.PCMASK, rep_size=16,
                     fres=[SFrameFRE(0, words=[8]), SFrameFRE(11, words=[16])]),
           SFrameFDE(0x2100, 0x60, kind=FDEKind.FLEX, fres=[
               SFrameFRE(0, words=[flex_control(7, False), 8]),
               SFrameFRE(9, words=[flex_control(10, False), 0]),
               SFrameFRE(0x18, words=[flex_control(10, False), 0, 0, flex_control(6, True), 0]),
               SFrameFRE(0x1A, words=[flex_control(6, True), -8, 2, -16, 0x33, 0])])]
    s390 = [SFrameFDE(0x3000, 0x40, fres=[SFrameFRE(0, words=[0]),
                                         SFrameFRE(6, words=[20, 0, -72])])]
    seeds.append(encode(SFrameSection.build(ABI.AARCH64_LE, a64)))
    seeds.append(encode(SFrameSection.build(ABI.AARCH64_BE, a64[:2], version=2)))
    seeds.append(encode(SFrameSection.build(ABI.AMD64_LE, x86)))
    seeds.append(encode(SFrameSection.build(ABI.AMD64_LE, [SFrameFDE(0x2000, 0x20, fres=[
        SFrameFRE(0, words=[8]), SFrameFRE(1, words=[16, -16])])], version=1)))
    seeds.append(encode(SFrameSection.build(ABI.S390X_BE, s390, version=2)))
    # Many FDEs, FLEX and DEFAULT mixed (lock-step FRE walks of the table builder).
    many = [SFrameFDE(0x10000 + 0x100 * k, 0x80, kind=FDEKind.FLEX, fres=[
        SFrameFRE(0, words=[0x39, 8]), SFrameFRE(4, words=[0x39, 16 + k]),
        SFrameFRE(0x40, words=[0x51, 0, 0, 0x33, 0])]) if k % 4 == 0 else
        SFrameFDE(0x10000 + 0x100 * k, 0x80, fres=[
            SFrameFRE(0, words=[8]), SFrameFRE(4, words=[16 + k, -16]),
            SFrameFRE(0x40, words=[8])]) for k in range(70)]
    seeds.append(encode(SFrameSection.build(ABI.AMD64_LE, many)))
    return seeds


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 4))
        if op == 0 and data:  # flip a byte
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == 1 and len(data) >= 28:  # overwrite a header u32 with an extreme value
            field = draw(st.sampled_from([8, 12, 16, 20, 24]))
            value = draw(st.sampled_from([0, 1, 2, 0x7F, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                                          len(data), len(data) - 28]))
            struct.pack_into("<I" if data[0] == 0xE2 else ">I", data, field, value & 0xFFFFFFFF)
        elif op == 2:  # truncate
            data = data[:draw(st.integers(0, len(data)))]
        elif op == 3:  # extend
            data += bytes(draw(st.lists(st.integers(0, 255), max_size=16)))
        elif op == 4 and len(data) > 40:  # overwrite an FRE-area byte with an info-like value
            i = draw(st.integers(28, len(data) - 1))
            data[i] = draw(st.sampled_from([0x00, 0x03, 0x07, 0x0F, 0x1F, 0x61, 0x67, 0xFF, 0x9F]))
    return bytes(data)


def _exercise(data: bytes) -> None:
    try:
        section = decode(data, section_address=0x400000, path="fuzz")
    except SFrameFormatError as exc:
        assert exc.offset is not None or exc.reason
        try:
            SFrameTable.from_bytes(data, section_address=0x400000)
        except SFrameFormatError:
            return
        raise AssertionError("from_bytes accepted what decode refused") from None
    validate(section)
    validate(section, kernel=True)
    dump_text(section, filename="fuzz")
    dump_json(section)
    again = decode(encode(section), section_address=0x400000)

    def content(s: SFrameSection) -> list[tuple[int, int, list[tuple[int, list[int]]]]]:
        # the encoder sorts the index when SFRAME_F_FDE_SORTED is set
        return sorted((f.start, f.size, [(x.start, x.words) for x in f.fres]) for f in s.fdes)

    assert content(again) == content(section)
    t1 = SFrameTable(section)
    t2 = SFrameTable.from_bytes(data, section_address=0x400000)
    if not section.fdes:
        assert t1.find(0x400000) is None
        return
    lo = min(f.start for f in section.fdes)
    hi = max(f.start + f.size for f in section.fdes)
    span = min(hi - lo, 4096)
    pcs = np.array([lo - 1 + k for k in range(0, span + 2)], dtype=np.uint64) \
        if lo > 0 else np.arange(0, span + 2, dtype=np.uint64)
    r1, r2 = t1.find_many(pcs), t2.find_many(pcs)
    assert np.array_equal(r1.found, r2.found)
    assert np.array_equal(r1.invalid, r2.invalid)
    assert np.array_equal(r1.cfa_offset[r1.found], r2.cfa_offset[r2.found])
    assert np.array_equal(r1.start[r1.found], r2.start[r2.found])
    for k in range(0, len(pcs), max(1, len(pcs) // 64)):
        try:
            row = t1.find(int(pcs[k]))
        except SFrameFormatError:
            assert r1.invalid[k]
            continue
        assert (row is not None) == bool(r1.found[k])


@settings(max_examples=1000, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_sections_only_raise_format_errors(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=150, deadline=2000)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_format_errors(data: bytes) -> None:
    _exercise(b"\xe2\xde\x03\x05\x02\x00\x00\x00" + data)
    _exercise(data)


def test_seeds_are_valid() -> None:
    for data in SEEDS:
        section = decode(data)
        assert encode(section) == data
        assert validate(section) == [] or section.version == 1
