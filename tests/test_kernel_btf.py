"""BTF layouts against layout.json (from the DWARF of the full vmlinux, via drgn)."""

from __future__ import annotations

import json
import struct

import pytest

from kernel_fixtures import DATA, VMLINUX
from sfunwind.errors import BTFFormatError, SfunwindError
from sfunwind.kernel.btf import BTF
from sfunwind.kernel.elfsections import read_section
from sfunwind.memory.files import materialize


@pytest.fixture(scope="module")
def btf() -> BTF:
    return BTF.from_file(VMLINUX)


def test_every_layout_value_matches_dwarf(btf):
    """All 128 struct offsets, sizes, member sizes and enum values of layout.json."""
    layout = json.loads((DATA / "layout.json").read_text())
    n = 0
    for cname, fields in layout["structs"].items():
        for key, want in fields.items():
            got = btf.size_of(cname) if key == "size" else btf.offsetof(cname, key)
            assert got == want, (cname, key)
            n += 1
    for cname, fields in layout["member_sizes"].items():
        for key, want in fields.items():
            assert btf.member(cname, key).size == want, (cname, key)
            n += 1
    for cname, values in layout["enums"].items():
        assert btf.enum(cname) == values
        n += len(values)
    assert n == 128


def test_member_details(btf):
    on_cpu = btf.member("struct task_struct", "on_cpu")
    assert (on_cpu.offset, on_cpu.size, on_cpu.signed) == (60, 1, False)  # a u8 in 7.2
    pid = btf.member("struct task_struct", "pid")
    assert pid.signed and pid.size == 4
    assert btf.offsetof("struct pt_regs", "regs[30]") == 240
    assert btf.offsetof("struct pt_regs", "stackframe.record.lr") == 304
    assert btf.enumerator("KUNWIND_SOURCE_REGS_PC") == 4
    with pytest.raises(KeyError):
        btf.offsetof("struct task_struct", "no_such_member")
    with pytest.raises(KeyError):
        btf.offsetof("struct pt_regs", "regs[31]")
    with pytest.raises(KeyError):
        btf.find("struct no_such_struct_xyz")


def test_anonymous_members_and_bitfields(btf):
    # pt_regs: "regs" lives in an anonymous union { struct user_pt_regs user_regs; struct {...} }
    assert btf.offsetof("struct pt_regs", "user_regs") == 0
    # a bit-field member reports its bit position
    members = btf.members(btf.find("struct task_struct"))
    bitfields = [m for m in members if m[3]]
    assert bitfields, "task_struct has bit-fields (sched_reset_on_fork, ...)"
    name = bitfields[0][0]
    m = btf.member("struct task_struct", name)
    assert m.bit_size == bitfields[0][3]


def test_section_found_by_name_without_alloc_flag():
    data, offset = read_section(materialize(VMLINUX), ".BTF")
    assert data[:2] == b"\x9f\xeb" and offset > 0


def _blob() -> bytes:
    return read_section(materialize(VMLINUX), ".BTF")[0]


@pytest.mark.parametrize("mutate", ["magic", "version", "hdr_past_end", "kind", "truncated"])
def test_corrupt_btf_is_a_typed_error(mutate):
    blob = bytearray(_blob())
    hdr_len, type_off, type_len = struct.unpack_from("<III", blob, 4)
    if mutate == "magic":
        blob[0] = 0
    elif mutate == "version":
        blob[2] = 7
    elif mutate == "hdr_past_end":
        struct.pack_into("<I", blob, 12, len(blob))
    elif mutate == "kind":
        t0 = hdr_len + type_off
        info = struct.unpack_from("<I", blob, t0 + 4)[0]
        struct.pack_into("<I", blob, t0 + 4, (info & ~(0x1F << 24)) | (30 << 24))
    elif mutate == "truncated":
        struct.pack_into("<I", blob, 12, type_len - 6)
    with pytest.raises(BTFFormatError) as err:
        BTF(bytes(blob), path="x.btf")
    assert "x.btf" in str(err.value)
    assert isinstance(err.value, SfunwindError)
