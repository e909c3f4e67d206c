#!/usr/bin/env python3
"""drgn_reference.py [--touch] VMCORE VMLINUX OUT_PREFIX

Write drgn's view of a kernel vmcore as the reference ("expected") output for
another unwinder:

  OUT_PREFIX.json  every task (init_task list + threads + each CPU's idle task)
                   and every CPU's running context (PRSTATUS registers, the
                   current task's trace); each frame has pc, sp, symbol+offset,
                   drgn's function name, is_inline, interrupted and the
                   registers drgn recovered for it
  OUT_PREFIX.txt   the same, readable

--touch additionally reads memory an independent unwinder is likely to need
(each CPU's IRQ stack, the code page at every interrupted/PRSTATUS pc), so that
running this under strace shows which core pages to keep.

Needs drgn (PyPI) and the vmlinux with DWARF.  The vmcore name is recorded
without its directory.
"""
import json
import os
import sys

from drgn import FaultError, Program
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.percpu import per_cpu
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import task_cpu, task_state_to_char

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contextlib

from vmcore_lib import Core

REG_ORDER = [f"x{i}" for i in range(29)] + ["fp", "lr", "sp", "pc", "pstate"]


def main(argv):
    touch = "--touch" in argv
    argv = [a for a in argv if a != "--touch"]
    if len(argv) != 4:
        print(__doc__)
        return 2
    core_path, vmlinux, prefix = argv[1:4]
    prog = Program()
    prog.set_core_dump(core_path)
    prog.load_debug_info([vmlinux])
    core = Core(core_path)
    vmci = core.vmcoreinfo
    koff = int(vmci.get("KERNELOFFSET", "0"), 16)
    # THREAD_SIZE (= IRQ_STACK_SIZE on arm64) from the init task's stack bounds
    thread_size = prog.symbol("__end_init_stack").address - prog.symbol("__start_init_stack").address
    touched_pcs = set()

    def symbolize(addr, lookup):
        try:
            s = prog.symbol(lookup)
            return s.name, addr - s.address, s.size
        except LookupError:
            return None, None, None

    def frames(trace):
        out = []
        for i, f in enumerate(trace):
            pc = f.pc
            # caller frames hold a return address: look up pc-1 (it may be just
            # past the end of a function that ends in a call)
            lookup = pc if (i == 0 or f.interrupted) else pc - 1
            name, off, size = symbolize(pc, lookup)
            d = {"index": i, "pc": hex(pc), "symbol": name, "offset": off, "symbol_size": size,
                 "function": f.name, "is_inline": f.is_inline, "interrupted": f.interrupted}
            try:
                d["sp"] = hex(f.sp)
            except LookupError:
                d["sp"] = None
            try:
                regs = f.registers()
            except Exception:
                regs = {}
            # drgn reports x29/x30 also as fp/lr; keep one name for each
            for alias, name in (("x29", "fp"), ("x30", "lr")):
                if alias in regs and name in regs and regs[alias] == regs[name]:
                    del regs[alias]
            d["registers"] = {k: hex(regs[k]) for k in
                              sorted(regs, key=lambda r: (REG_ORDER.index(r) if r in REG_ORDER else 99, r))}
            if i == 0 or f.interrupted:
                touched_pcs.add(pc)
            out.append(d)
        return out

    def trace_of(task):
        try:
            return {"frames": frames(prog.stack_trace(task))}
        except Exception as e:  # record drgn's failure as part of the reference
            return {"error": f"{type(e).__name__}: {e}"}

    cpus = []
    curr_of_cpu = {}
    idle_tasks = []
    for cpu in for_each_online_cpu(prog):
        rq = per_cpu(prog["runqueues"], cpu)
        curr = rq.curr
        irq_stack = per_cpu(prog["irq_stack_ptr"], cpu).value_()
        e = {"cpu": cpu,
             "per_cpu_offset": hex(prog["__per_cpu_offset"][cpu].value_()),
             "curr_task": hex(curr.value_()), "curr_pid": curr.pid.value_(),
             "curr_comm": curr.comm.string_().decode(),
             "idle_task": hex(rq.idle.value_()),
             "irq_stack_ptr": hex(irq_stack)}
        if cpu < len(core.prstatus):
            pr = dict(core.prstatus[cpu])
            e["prstatus_pr_pid"] = pr.pop("pr_pid")
            e["prstatus"] = {k: hex(v) for k, v in pr.items()}
            touched_pcs.add(pr["pc"])
        e.update(trace_of(curr))
        cpus.append(e)
        curr_of_cpu[cpu] = curr.value_()
        idle_tasks.append(rq.idle)
        if touch:
            prog.read(irq_stack, thread_size)

    tasks = []
    seen = set()

    def add_task(t, idle_of=None):
        addr = t.value_()
        if addr in seen:
            return
        seen.add(addr)
        cc = t.thread.cpu_context
        cpu = task_cpu(t)
        stack = t.stack.value_()
        e = {"pid": t.pid.value_(), "tgid": t.tgid.value_(), "comm": t.comm.string_().decode(),
             "task": hex(addr), "state": task_state_to_char(t), "cpu": cpu,
             "on_cpu": t.on_cpu.value_(), "running": curr_of_cpu.get(cpu) == addr,
             "stack": hex(stack),
             "cpu_context": {m.name: hex(getattr(cc, m.name).value_()) for m in cc.type_.members
                             if m.name in ("x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                           "x26", "x27", "x28", "fp", "sp", "pc")}}
        if idle_of is not None:
            e["idle_of_cpu"] = idle_of
        e.update(trace_of(t))
        if touch:
            prog.read(stack, thread_size)
        tasks.append(e)

    for t in for_each_task(prog):
        add_task(t)
    for cpu, t in enumerate(idle_tasks):
        add_task(t, idle_of=cpu)

    if touch:
        for pc in sorted(touched_pcs):
            with contextlib.suppress(FaultError):
                prog.read(pc & ~0xFFF, 4096)
        for th in prog.threads():
            _ = (th.tid, th.object.comm)  # touch: record the pages drgn reads

    keys = ("OSRELEASE", "BUILD-ID", "PAGESIZE", "KERNELOFFSET", "NUMBER(KERNELPACMASK)",
            "NUMBER(VA_BITS)", "NUMBER(TCR_EL1_T1SZ)", "NUMBER(kimage_voffset)",
            "NUMBER(PHYS_OFFSET)", "SYMBOL(swapper_pg_dir)", "SYMBOL(_stext)",
            "NUMBER(VMALLOC_START)", "NUMBER(MODULES_VADDR)")
    ref = {"format": 1,
           "vmcore": os.path.basename(core_path),
           "osrelease": vmci.get("OSRELEASE"), "build_id": vmci.get("BUILD-ID"),
           "kaslr_offset": hex(koff),
           "vmcoreinfo": {k: vmci[k] for k in keys if k in vmci},
           "thread_size": thread_size, "irq_stack_size": thread_size,
           "notes": ["Addresses and register values are hex strings; pid/cpu/index/offset are numbers.",
                     "Frames are drgn's stack_trace(); an inline frame has the pc of the real frame",
                     "after it. symbol/offset/symbol_size come from the ELF symbol table; caller",
                     "frames are looked up at pc-1 (like the kernel's %pB) but offset is pc-symbol.",
                     "registers: what drgn knows for that frame (x29/x30 appear as fp/lr).",
                     "sp is null where drgn does not know it (after frames without CFI).",
                     "cpus[].frames is the trace of the task running on that CPU, unwound from",
                     "the CPU's NT_PRSTATUS registers; frame 0 is marked interrupted by drgn."],
           "cpus": cpus, "tasks": tasks}
    with open(prefix + ".json", "w") as f:
        f.write(dump_json(ref))
    with open(prefix + ".txt", "w") as f:
        f.write(render_text(ref))
    print(f"{os.path.basename(prefix)}: {len(tasks)} tasks, {len(cpus)} cpus")
    return 0


def dump_json(ref):
    """Stable, diff-friendly JSON: one line per frame, task and CPU header."""
    def entry(e):
        head = {k: v for k, v in e.items() if k != "frames"}
        s = "  " + json.dumps(head, separators=(",", ":"))[:-1]
        if "frames" in e:
            s += ',"frames":[\n' + ",\n".join("    " + json.dumps(fr, separators=(",", ":"))
                                               for fr in e["frames"]) + "]"
        return s + "}"
    top = {k: v for k, v in ref.items() if k not in ("cpus", "tasks")}
    out = "{\n" + ",\n".join(f" {json.dumps(k)}:{json.dumps(v)}" for k, v in top.items())
    for key in ("cpus", "tasks"):
        out += f',\n "{key}":[\n' + ",\n".join(entry(e) for e in ref[key]) + "]"
    return out + "\n}\n"


def fmt_frame(fr):
    if fr["symbol"] is not None:
        loc = f"{fr['symbol']}+{fr['offset']:#x}/{fr['symbol_size']:#x}"
    else:
        loc = "?"
    flags = []
    if fr["is_inline"]:
        flags.append(f"inline {fr['function']}")
    elif fr["function"] and fr["function"] != fr["symbol"]:
        flags.append(f"function {fr['function']}")
    if fr["interrupted"]:
        flags.append("interrupted")
    sp = f"sp={fr['sp']}" if fr["sp"] is not None else "sp=?"
    return f"  #{fr['index']:<2} {int(fr['pc'], 16):#018x} {loc:<48} {sp}{'  [' + ', '.join(flags) + ']' if flags else ''}"


def render_text(ref):
    out = [f"# drgn reference for {ref['vmcore']}  ({ref['osrelease']}, build-id {ref['build_id']}, "
           f"KASLR offset {ref['kaslr_offset']})",
           "# one block per CPU (running context from PRSTATUS), then one per task;",
           "# frames: pc, symbol+offset/size, sp, [inline <function> | interrupted]", ""]
    for c in ref["cpus"]:
        out.append(f"== CPU {c['cpu']}: current pid {c['curr_pid']} ({c['curr_comm']}) task {c['curr_task']}"
                   f"  irq_stack {c['irq_stack_ptr']}")
        pr = c.get("prstatus")
        if pr:
            pstate = int(pr["pstate"], 16)
            out.append(f"   PRSTATUS pc={pr['pc']} sp={pr['sp']} fp={pr['x29']} lr={pr['x30']} "
                       f"pstate={pr['pstate']} (EL{(pstate >> 2) & 3}{'h' if pstate & 1 else 't'})")
        out += [fmt_frame(fr) for fr in c.get("frames", [])] or [f"  ERROR {c.get('error')}"]
        out.append("")
    for t in ref["tasks"]:
        extra = " RUNNING" if t["running"] else ""
        if "idle_of_cpu" in t:
            extra += f" idle-of-cpu{t['idle_of_cpu']}"
        out.append(f"== pid {t['pid']} tgid {t['tgid']} ({t['comm']}) state {t['state']} cpu {t['cpu']} "
                   f"on_cpu {t['on_cpu']}{extra}  task {t['task']} stack {t['stack']}")
        if "frames" in t:
            out += [fmt_frame(fr) for fr in t["frames"]]
        else:
            out.append(f"  ERROR {t['error']}")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
