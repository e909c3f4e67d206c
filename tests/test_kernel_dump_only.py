"""Opening a vmcore without a vmlinux: kallsyms and BTF read from the dump itself.

The fixture dumps were trimmed without ``.rodata``, where the kernel keeps its kallsyms tables
and ``.BTF``.  This test puts them back at their real physical addresses (the page tables of
the dump already map them): the BTF bytes from ``vmlinux.debug`` and kallsyms tables in the
kernel's format (``scripts/kallsyms.c`` layout, trivial token table) for the text symbols plus
the data symbols the task model needs.  Then ``KernelProgram.open(vmcore)`` must list the same
tasks as drgn.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernel_fixtures import (
    VMLINUX,
    core_notes,
    core_pages,
    drgn_reference,
    symbols,
    vmcore,
    write_core,
)
from sfunwind.kernel.elfsections import read_section
from sfunwind.kernel.program import KernelProgram
from sfunwind.memory.arm64 import KernelAddressSpace
from sfunwind.memory.elfcore import open_core
from sfunwind.memory.files import materialize

NEEDED = ("_text", "_stext", "_etext", "_sinittext", "_einittext", "_end", "__start_init_stack",
          "__end_init_stack", "swapper_pg_dir", "init_task", "__per_cpu_offset", "runqueues",
          "nr_cpu_ids", "__cpu_online_mask", "irq_stack_ptr", "overflow_stack",
          "sdei_stack_normal_ptr", "sdei_stack_critical_ptr", "__start_BTF", "__stop_BTF",
          "__entry_text_start", "__entry_text_end")


def _encode_names(names: list[str]) -> bytes:
    blob = bytearray()
    for name in names:
        text = ("T" + name).encode()
        if len(text) < 0x80:
            blob.append(len(text))
        else:
            blob += bytes([(len(text) & 0x7F) | 0x80, len(text) >> 7])
        blob += text
    return bytes(blob)


@pytest.fixture(scope="module")
def dump_only_core(tmp_path_factory):
    name = "kaslr/irq-in-fault"
    core = open_core(vmcore(name))
    info = core.vmcoreinfo
    mem = KernelAddressSpace(core)
    sym = symbols()
    koff = info.kernel_offset
    text_lo, text_hi = sym.address_of("_stext"), sym.address_of("_etext")
    keep = [i for i in range(len(sym))
            if text_lo <= int(sym.addresses[i]) < text_hi or sym.names[i] in NEEDED]
    names = [sym.names[i] for i in keep]
    addrs = [int(sym.addresses[i]) + koff for i in keep]
    base = sym.address_of("_text") + koff
    tables = {
        "kallsyms_num_syms": len(names).to_bytes(4, "little"),
        "kallsyms_names": _encode_names(names),
        "kallsyms_token_table": b"".join(bytes([i]) + b"\0" for i in range(256)),
        "kallsyms_token_index": (np.arange(256, dtype="<u2") * 2).tobytes(),
        "kallsyms_offsets": np.asarray([a - base for a in addrs], dtype="<u4").tobytes(),
    }
    btf, _ = read_section(materialize(VMLINUX), ".BTF")
    placed = [(info.symbol(k), v) for k, v in tables.items()]
    placed.append((sym.address_of("__start_BTF") + koff, btf))
    pages = core_pages(core)
    for va, blob in placed:
        pos = 0
        while pos < len(blob):
            pa = mem.translate(va + pos)
            pfn, inpage = divmod(pa, 4096)
            take = min(len(blob) - pos, 4096 - inpage)
            page = bytearray(pages.get(pfn, bytes(4096)))
            page[inpage:inpage + take] = blob[pos:pos + take]
            pages[pfn] = bytes(page)
            pos += take
    path = tmp_path_factory.mktemp("dump-only") / "with-rodata.vmcore"
    write_core(path, core_notes(core), pages)
    return name, path, len(names)


def test_dump_only_open_lists_drgn_tasks(dump_only_core):
    name, path, count = dump_only_core
    prog = KernelProgram.open(path)
    assert prog.symbols.source == "kallsyms" and len(prog.symbols) == count
    assert prog.vmlinux_path is None
    assert prog.types.count == 124517
    ref = drgn_reference(name)
    mine = sorted((t.pid, t.tgid, t.comm, t.state, t.cpu, t.on_cpu, t.stack)
                  for t in prog.threads())
    theirs = sorted((t["pid"], t["tgid"], t["comm"], t["state"], t["cpu"], t["on_cpu"],
                     int(t["stack"], 16)) for t in ref["tasks"])
    assert mine == theirs
    assert prog.layout.final_record_offset == 0x3FE8
    # symbolization from kallsyms agrees with drgn for the running CPU's trace
    cpu1 = ref["cpus"][1]
    for frame in cpu1["frames"]:
        if frame["is_inline"] or frame["symbol"] is None:
            continue
        pc = int(frame["pc"], 16)
        info = prog.symbols.lookup(pc if frame["index"] == 0 or frame["interrupted"] else pc - 1)
        assert (info.name, pc - info.address) == (frame["symbol"], frame["offset"])


def test_dump_only_without_rodata_is_a_clear_error():
    from sfunwind.errors import MemoryFault

    with pytest.raises(MemoryFault, match="kallsyms tables are not in the dump") as err:
        KernelProgram.open(vmcore("kaslr/irq-in-fault"))
    assert err.value.address == open_core(vmcore("kaslr/irq-in-fault")).vmcoreinfo.symbol(
        "kallsyms_num_syms")
