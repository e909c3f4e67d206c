"""Symbols: kallsyms-exact sizes (checked against the kernel's own sysrq output) and drgn."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kernel_fixtures import (
    BOOTS,
    DUMPS,
    VMLINUX,
    VMLINUX16,
    boot_dir,
    drgn_reference,
    program,
    symbols,
)
from sfunwind.kernel.symbols import Symbolizer
from sfunwind.memory.base import SparseMemory
from sfunwind.memory.elfcore import VmcoreInfo

_FRAME = re.compile(r"\]\s+([A-Za-z0-9_.$]+)\+(0x[0-9a-f]+)/(0x[0-9a-f]+)")


def _sysrq_frames(boot: str) -> list[tuple[str, int, int]]:
    out = []
    for name in ("sysrq-t.txt", "sysrq-l.txt"):
        text = (boot_dir(boot) / name).read_text()
        out += [(m.group(1), int(m.group(2), 16), int(m.group(3), 16))
                for m in _FRAME.finditer(text)]
    return out


@pytest.mark.parametrize("boot", BOOTS)
def test_every_sysrq_frame_matches_kallsyms(boot):
    """Every ``name+off/size`` the kernel printed in sysrq-t and sysrq-l: our lookup of the
    same address gives the same name and the same kallsyms size (not the ELF st_size)."""
    sym = symbols(VMLINUX16) if boot == "16k" else symbols()
    frames = _sysrq_frames(boot)
    assert len(frames) > 500
    differs_from_elf = 0
    ambiguous = 0
    for name, offset, size in frames:
        # a name may belong to several static functions: one of them must print the same
        candidates = []
        for start in sym.addresses_of(name):
            address = start + offset
            # the kernel prints callers with %pB (lookup at address - 1), frame 0 with +0
            info = sym.lookup(address - 1 if offset else address)
            assert info is not None, name
            candidates.append((info, address))
        assert candidates, name
        ambiguous += len(candidates) > 1
        matching = [(i, a) for i, a in candidates if (i.name, i.size) == (name, size)]
        assert matching, (name, hex(offset), hex(size), [c[0] for c in candidates])
        info, address = matching[0]
        assert sym.format(address, backtrace=bool(offset)) == f"{name}+{offset:#x}/{size:#x}"
        differs_from_elf += info.elf_size != size
    assert differs_from_elf > 100  # the point of the exercise: /0x348 where ELF says 0x31c
    assert ambiguous < len(frames) // 10


def test_duplicate_static_names():
    sym = symbols()
    starts = sym.addresses_of("__flush_tlb_range.constprop.0.isra.0")
    assert len(starts) >= 2 and starts == sorted(starts)
    assert starts[0] == sym.address_of("__flush_tlb_range.constprop.0.isra.0")
    assert 0x248 in {sym.lookup(a).size for a in starts}  # the one sysrq-t printed (va48)
    assert sym.addresses_of("no_such_symbol_xyz") == []
    assert sym.addresses_of("schedule") == [sym.address_of("schedule")]


def test_switch_to_size_is_distance_to_next_symbol():
    sym = symbols()
    info = sym.lookup(sym.address_of("__switch_to") + 0x180)
    assert (info.name, info.offset, info.size, info.elf_size) == ("__switch_to", 0x180,
                                                                 0x348, 0x31C)
    nxt = sym.lookup(info.address + info.size)
    assert nxt.address == info.address + 0x348 and nxt.name != "__switch_to"


@pytest.mark.parametrize("dump", DUMPS)
def test_drgn_frames_symbolize_identically(dump):
    """Every non-inline frame drgn printed: same symbol, offset and ELF size, KASLR or not."""
    prog = program(dump)
    ref = drgn_reference(dump)
    count = 0
    for entry in ref["tasks"] + ref["cpus"]:
        for frame in entry.get("frames", []):
            if frame["is_inline"] or frame["symbol"] is None:
                continue
            pc = int(frame["pc"], 16)
            info = prog.symbols.lookup(pc if frame["index"] == 0 or frame["interrupted"]
                                       else pc - 1)
            assert info is not None
            assert (info.name, pc - info.address, info.elf_size) == \
                (frame["symbol"], frame["offset"], frame["symbol_size"]), frame
            assert prog.symbols.is_kernel_text(pc)
            count += 1
    assert count > 400


def test_kaslr_relocation_and_text_ranges():
    nok, kas = program("nokaslr/el1-abort"), program("kaslr/el1-abort")
    off = kas.kaslr_offset
    assert off == 0x262AF8800000 and nok.kaslr_offset == 0
    for name in ("schedule", "init_task", "el1h_64_irq", "_stext", "_end"):
        assert kas.symbol(name) == nok.symbol(name) + off
    stext, etext = nok.symbol("_stext"), nok.symbol("_etext")
    assert nok.symbols.is_kernel_text(stext) and not nok.symbols.is_kernel_text(etext)
    assert nok.symbols.is_kernel_text(nok.symbol("start_kernel"))  # .init.text
    assert not nok.symbols.is_kernel_text(nok.symbol("init_task"))
    assert nok.symbols.lookup(0x1000) is None
    assert "no_such_symbol_xyz" not in nok.symbols
    with pytest.raises(KeyError):
        nok.symbol("no_such_symbol_xyz")


def test_mapping_and_local_labels_are_not_kallsyms():
    sym = symbols()
    assert "$x" not in sym and "$d" not in sym
    assert len(sym) == len(sym.addresses) == len(sym.sizes)
    assert np.all(sym.addresses[1:] >= sym.addresses[:-1])


def _kallsyms_tables(names: list[tuple[str, str]], offsets: list[int]) -> tuple[bytes, ...]:
    """Encode kallsyms tables the way scripts/kallsyms.c lays them out, with the trivial
    token table (token i = byte i)."""
    token_table = b"".join(bytes([i]) + b"\0" for i in range(256))
    token_index = np.arange(256, dtype="<u2") * 2
    blob = bytearray()
    for typ, name in names:
        text = (typ + name).encode()
        if len(text) < 0x80:
            blob.append(len(text))
        else:
            blob += bytes([(len(text) & 0x7F) | 0x80, len(text) >> 7])
        blob += text
    return (bytes(blob), token_table, token_index.tobytes(),
            np.asarray(offsets, dtype="<u4").tobytes())


def test_kallsyms_fallback_decodes_tables_from_memory():
    """The dump-only path: kallsyms tables read from kernel memory.  The fixtures trimmed
    .rodata away, so the tables are rebuilt from the vmlinux symbols (first 3000 text
    symbols after _stext, plus a long name) in the kernel's layout and read back."""
    sym = symbols()
    start = int(np.searchsorted(sym.addresses, np.uint64(sym.address_of("_text"))))
    picked = [(sym.names[i], int(sym.addresses[i])) for i in range(start, start + 3000)]
    picked.append(("x" * 200, picked[-1][1] + 4))
    base = sym.address_of("_text")
    names_blob, token_table, token_index, offsets = _kallsyms_tables(
        [("T", n) for n, _ in picked], [a - base for _, a in picked])
    at = {"kallsyms_num_syms": 0xFFFF800081400000, "kallsyms_names": 0xFFFF800081401000,
          "kallsyms_token_table": 0xFFFF800081500000,
          "kallsyms_token_index": 0xFFFF800081510000, "kallsyms_offsets": 0xFFFF800081520000}
    mem = SparseMemory([(at["kallsyms_num_syms"], len(picked).to_bytes(4, "little")),
                        (at["kallsyms_names"], names_blob),
                        (at["kallsyms_token_table"], token_table),
                        (at["kallsyms_token_index"], token_index),
                        (at["kallsyms_offsets"], offsets)])
    lines = [f"SYMBOL({k})={v:x}" for k, v in at.items()]
    lines.append(f"SYMBOL(_stext)={sym.address_of('_stext'):x}")
    info = VmcoreInfo.parse("\n".join(lines).encode())
    ks = Symbolizer.from_kallsyms(mem, info, kaslr_offset=0)
    assert len(ks) == len(picked)
    first: dict[str, int] = {}
    for name, address in picked:
        first.setdefault(name, address)
    for name, address in first.items():
        assert ks.address_of(name) == address
    sw = ks.lookup(sym.address_of("_stext") + 8)
    ref = sym.lookup(sym.address_of("_stext") + 8)
    assert (sw.name, sw.offset, sw.size) == (ref.name, ref.offset, ref.size)
    assert "x" * 200 in ks


def test_text_only_kallsyms():
    """Without CONFIG_KALLSYMS_ALL kallsyms has only text symbols: data symbols vanish, and
    a text symbol's size still reaches the next text symbol."""
    from sfunwind.kernel.symbols import Symbolizer

    full = symbols()
    text = Symbolizer.from_vmlinux(VMLINUX, all_symbols=False)
    assert 50_000 < len(text) < len(full)
    assert text.lookup(full.address_of("init_task")) is None
    assert "init_task" not in text and "_etext" in text and "_stext" in text
    sw = full.address_of("__switch_to") + 0x180
    assert (text.lookup(sw).name, text.lookup(sw).size) == ("__switch_to", 0x348)
    for name in ("schedule", "el1h_64_irq", "start_kernel"):
        assert text.address_of(name) == full.address_of(name)
