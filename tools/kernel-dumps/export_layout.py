#!/usr/bin/env python3
"""export_layout.py VMCORE VMLINUX OUT.json

Write the struct offsets, enum values and symbol addresses that an arm64
frame-record unwinder / vmcore reader uses: offsets from the vmlinux DWARF
with drgn (any vmcore of the same build works, a trimmed one too; it is only
needed to give drgn a program), symbols straight from the vmlinux ELF symbol
table (link-time addresses; drgn's prog.symbol() is not used for them because
in a KASLR core it leaves symbols that lie past the end of the last section,
such as _end, unrelocated).  The result is meant for cross-checking a BTF
reader (see btf.py --check) and is what vmcore_lib.kernel_walk() reads.
"""
import contextlib
import json
import os
import struct
import sys

from drgn import Program, offsetof, sizeof

STRUCTS = {
    "struct task_struct": ["thread_info", "thread_info.flags", "thread_info.cpu", "__state",
                           "stack", "on_cpu", "tasks", "pid", "tgid", "thread_node", "comm",
                           "signal", "thread", "thread.cpu_context", "thread.cpu_context.x19",
                           "thread.cpu_context.fp", "thread.cpu_context.sp",
                           "thread.cpu_context.pc"],
    "struct thread_info": ["flags", "preempt_count", "cpu"],
    "struct cpu_context": ["x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
                           "fp", "sp", "pc"],
    "struct pt_regs": ["regs", "regs[29]", "regs[30]", "sp", "pc", "pstate", "orig_x0",
                       "syscallno", "pmr", "sdei_ttbr1", "stackframe", "stackframe.record",
                       "stackframe.type"],
    "struct frame_record": ["fp", "lr"],
    "struct frame_record_meta": ["record", "type"],
    "struct rq": ["curr", "idle", "cpu"],
    "struct signal_struct": ["thread_head"],
    "struct list_head": ["next", "prev"],
}
ENUMS = ["enum kunwind_source"]
SYMBOLS = [
    # task list, per-cpu data, stacks
    "init_task", "__per_cpu_offset", "__per_cpu_start", "__per_cpu_end", "runqueues",
    "irq_stack_ptr", "__irq_regs", "overflow_stack", "cpu_number", "__cpu_possible_mask",
    "__cpu_online_mask", "nr_cpu_ids", "__start_init_stack", "__end_init_stack",
    # address space / image layout
    "swapper_pg_dir", "kimage_voffset", "_text", "_stext", "_etext", "__start_rodata",
    "__end_rodata", "_sdata", "_edata", "__bss_start", "__bss_stop", "_end",
    # exception entry and stack-switching code (no CFI in .debug_frame)
    "vectors", "el1h_64_irq", "el1h_64_sync", "el0t_64_irq", "el0t_64_sync",
    "call_on_irq_stack", "ret_from_fork", "cpu_switch_to", "__switch_to",
    # C handlers and the breakpoint locations used for the dumps
    "el1h_64_irq_handler", "el1h_64_sync_handler", "el1_interrupt", "el1_abort",
    "do_interrupt_handler", "gic_handle_irq", "sched_tick", "hrtimer_interrupt",
    "run_timer_softirq", "__do_softirq", "handle_softirqs",
]


def elf_symbols(path, names):
    """{name: (st_value, st_size)} for the wanted names from an ELF64 .symtab"""
    want = set(names)
    found = {}
    local = {}
    with open(path, "rb") as f:
        eh = f.read(64)
        shoff, = struct.unpack_from("<Q", eh, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", eh, 0x3A)
        f.seek(shoff)
        raw = f.read(shentsize * shnum)
        secs = [struct.unpack_from("<IIQQQQIIQQ", raw, i * shentsize) for i in range(shnum)]
        for s in secs:
            if s[1] != 2:  # SHT_SYMTAB
                continue
            f.seek(s[4])
            syms = f.read(s[5])
            strsec = secs[s[6]]
            f.seek(strsec[4])
            strs = f.read(strsec[5])
            for off in range(0, len(syms), 24):
                name_off, info, _other, _shndx, value, size = struct.unpack_from("<IBBHQQ", syms, off)
                name = strs[name_off:strs.index(b"\0", name_off)].decode()
                if name not in want:
                    continue
                d = local if info >> 4 == 0 else found  # prefer a global of that name
                d.setdefault(name, (value, size))
    for name, v in local.items():
        found.setdefault(name, v)
    return found


def member_size(prog, t, path):
    """sizeof the (nested) member 'a.b' or 'a[3]' of struct type t"""
    for part in path.split("."):
        idx = "[" in part
        part = part.split("[")[0]
        t = t.member(part).type
        while t.kind.name == "TYPEDEF":
            t = t.type
        if idx:
            t = t.type
    return sizeof(t)


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    core, vmlinux, out = argv[1:4]
    prog = Program()
    prog.set_core_dump(core)
    prog.load_debug_info([vmlinux])
    vmci = dict(line.split("=", 1) for line in prog["VMCOREINFO"].string_().decode().splitlines()
                if "=" in line)
    koff = int(vmci.get("KERNELOFFSET", "0"), 16)

    structs = {}
    member_sizes = {}
    for cname, members in STRUCTS.items():
        t = prog.type(cname)
        d = {"size": sizeof(t)}
        ms = {}
        for m in members:
            try:
                d[m] = offsetof(t, m)
                ms[m] = member_size(prog, t, m)
            except LookupError:
                pass
        structs[cname] = d
        member_sizes[cname] = ms
    enums = {}
    for e in ENUMS:
        with contextlib.suppress(LookupError):
            enums[e] = {x.name: x.value for x in prog.type(e).enumerators}
    symbols = {}
    elf = elf_symbols(vmlinux, SYMBOLS)
    for name in SYMBOLS:
        if name in elf:
            symbols[name] = {"address": hex(elf[name][0]), "size": elf[name][1]}
        else:  # static functions: drgn's symbol lookup, minus the KASLR offset
            try:
                sym = prog.symbol(name)
                symbols[name] = {"address": hex(sym.address - koff), "size": sym.size}
            except LookupError:
                pass
    thread_size = elf["__end_init_stack"][0] - elf["__start_init_stack"][0]
    layout = {
        "format": 1,
        "kernel": {"osrelease": vmci.get("OSRELEASE"), "build_id": vmci.get("BUILD-ID")},
        "source": "struct offsets: DWARF of the full vmlinux, read with drgn; symbols: its ELF symbol table",
        "notes": [
            "structs: byte offsets of (nested) members and sizeof; 'regs[29]' is an array element",
            "member_sizes: sizeof each listed member (e.g. task_struct.on_cpu is a u8 here)",
            "symbols: link-time addresses; add the KASLR offset (VMCOREINFO KERNELOFFSET)",
            "per-cpu variables (runqueues, irq_stack_ptr, __irq_regs, overflow_stack, cpu_number)",
            "are addresses inside .data..percpu: CPU n's copy is at address + __per_cpu_offset[n]",
            "FRAME_META_TYPE_* are #defines in arch/arm64/include/asm/stacktrace/frame.h",
        ],
        "constants": {"PAGE_SIZE": int(vmci.get("PAGESIZE", "4096")), "THREAD_SIZE": thread_size, "IRQ_STACK_SIZE": thread_size,
                      "FRAME_META_TYPE_NONE": 0, "FRAME_META_TYPE_FINAL": 1,
                      "FRAME_META_TYPE_PT_REGS": 2},
        "structs": structs,
        "member_sizes": member_sizes,
        "enums": enums,
        "symbols": symbols,
    }
    with open(out, "w") as f:
        json.dump(layout, f, indent=1)
        f.write("\n")
    print(f"{os.path.basename(out)}: {sum(len(v) for v in structs.values())} struct values, "
          f"{len(symbols)} symbols")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
