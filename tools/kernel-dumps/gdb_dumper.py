# gdb_dumper.py -- loaded into gdb-multiarch (gdb -x gdb_dumper.py) by make_dumps.py.
#
# Adds two commands:
#   kdump-init VMLINUX LOG.jsonl
#       read struct offsets from the vmlinux .BTF section (btf.py) and open the log
#   kdump-relocate VMLINUX RUNTIME_TEXT
#       reload the symbols with the KASLR offset (runtime _text - link-time _text)
#   kdump-at NAME LOCATION CONDITION MAXHITS TIMEOUT
#       break at LOCATION (SYMBOL or SYMBOL+OFFSET, exact address, no prologue
#       skipping), continue until a hit satisfies CONDITION, then write
#       NAME with "monitor dump-guest-memory" (relative to QEMU's working
#       directory) and delete the breakpoint.  Errors are logged, not raised,
#       so the following dumps still run.
#
# Conditions look at the stopped vCPU only, by walking its frame-record chain
# (x29) through struct frame_record_meta / pt_regs boundaries:
#   any                 first hit
#   kernel_fault_in_syscall  stopped in (or below) el1_abort with an EL1 pt_regs
#                       above it, and above that invoke_syscall/el0_svc (a
#                       kernel page fault while a system call runs)
#   irq_in_fault        hardirq on the IRQ stack that interrupted (EL1 pt_regs)
#                       a kernel page fault (second EL1 pt_regs, el1_abort)
#                       inside a system call (invoke_syscall, el0_svc above it)
#   softirq_el1         on this CPU's IRQ stack, first pt_regs on the task
#                       stack and from EL1 (softirq after an IRQ that
#                       interrupted kernel code)
#   nested_irq          on the IRQ stack with a pt_regs that is itself on the
#                       IRQ stack (an IRQ taken while already on the IRQ stack)
import json
import os
import signal
import sys
import threading
import time

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from btf import BTF, btf_section

MASK64 = (1 << 64) - 1
KERNEL_TEXT_PAC = 0xFFFF000000000000  # kernel text addresses have all these bits set


class State:
    off = None
    log = None
    thread_size = None
    kaslr_offset = 0


S = State()


def u64(addr):
    m = gdb.selected_inferior().read_memory(addr & MASK64, 8)
    return int.from_bytes(bytes(m), "little")


def reg(name):
    return int(gdb.selected_frame().read_register(name)) & MASK64


def sym(name):
    return int(gdb.parse_and_eval(f"(unsigned long long)&{name}")) & MASK64


def _interrupt():
    os.kill(os.getpid(), signal.SIGINT)  # like ^C: gdb stops the target


def cont(seconds):
    """continue, but interrupt the target after `seconds`"""
    timer = threading.Timer(max(seconds, 0.1), _interrupt)
    timer.start()
    try:
        gdb.execute("continue", to_string=True)
    except (KeyboardInterrupt, gdb.error):
        pass
    finally:
        timer.cancel()


def symname(addr):
    s = gdb.execute(f"info symbol {addr:#x}", to_string=True).strip()
    if s.startswith("No symbol"):
        return f"{addr:#x}"
    parts = s.split(" in section")[0].split(" + ")
    return parts[0] if len(parts) == 1 else f"{parts[0]}+{int(parts[1]):#x}"


def cpu_layout():
    ncpu = len(gdb.selected_inferior().threads())
    pcpu = sym("__per_cpu_offset")
    cpus = []
    for c in range(ncpu):
        off = u64(pcpu + 8 * c)
        irq = u64(sym("irq_stack_ptr") + off)
        curr = u64(sym("runqueues") + off + S.off["rq.curr"])
        stack = u64(curr + S.off["task.stack"])
        cpus.append({"cpu": c, "irq_stack": irq, "curr": curr, "stack": stack})
    return cpus


def where(sp, cpus):
    """(cpu, 'irq'|'task'|None) for a stack pointer"""
    for c in cpus:
        if c["irq_stack"] <= sp < c["irq_stack"] + S.thread_size:
            return c["cpu"], "irq"
    for c in cpus:
        if c["stack"] <= sp < c["stack"] + S.thread_size:
            return c["cpu"], "task"
    return None, None


def chain(fp, limit=128):
    """Frame-record chain from fp: entries
       ('frame', record address, stripped lr)
       ('pt_regs', regs address, pstate, pc, sp)
       ('final', record address, type)"""
    out = []
    o = S.off
    try:
        for _ in range(limit):
            if fp == 0 or fp & 7:
                break
            nfp, lr = u64(fp), u64(fp + 8)
            if nfp == 0 and lr == 0:
                typ = u64(fp + o["meta.type"] - o["meta.record"])
                if typ == 2:  # FRAME_META_TYPE_PT_REGS
                    regs = fp - o["pt_regs.stackframe"]
                    out.append(("pt_regs", regs, u64(regs + o["pt_regs.pstate"]),
                                u64(regs + o["pt_regs.pc"]), u64(regs + o["pt_regs.sp"])))
                    fp = u64(regs + o["pt_regs.x29"])
                    continue
                out.append(("final", fp, typ))
                break
            out.append(("frame", fp, lr | KERNEL_TEXT_PAC))
            fp = nfp
    except gdb.MemoryError:
        out.append(("unreadable", fp))
    return out


def el1h(pstate):
    return pstate & 0xF == 0x5


def names_between(ch, i, j):
    return [symname(e[2]).split("+")[0] for e in ch[i:j] if e[0] == "frame"]


def boundaries(ch):
    return [i for i, e in enumerate(ch) if e[0] == "pt_regs"]


def in_syscall(names):
    """frames of a system call being executed (not its exit work)"""
    return "el0_svc" in names and any(n.startswith("invoke_syscall") for n in names)


def cond_any(ctx):
    return True


def cond_kernel_fault_in_syscall(ctx):
    ch = ctx["chain"]
    b = boundaries(ch)
    if not b or not el1h(ch[b[0]][2]) or ch[-1][0] != "final":
        return False
    below = names_between(ch, 0, b[0])
    above = names_between(ch, b[0] + 1, len(ch))
    return ("el1_abort" in below or ctx["pc_name"] == "el1_abort") and in_syscall(above)


def cond_irq_in_fault(ctx):
    ch = ctx["chain"]
    b = boundaries(ch)
    if ctx["stack"] != "irq" or len(b) < 2 or ch[-1][0] != "final":
        return False
    if not (el1h(ch[b[0]][2]) and el1h(ch[b[1]][2])):
        return False
    return ("el1_abort" in names_between(ch, b[0] + 1, b[1])
            and in_syscall(names_between(ch, b[1] + 1, len(ch))))


def cond_softirq_el1(ctx):
    ch = ctx["chain"]
    b = boundaries(ch)
    if ctx["stack"] != "irq" or not b or ch[-1][0] != "final":
        return False
    regs = ch[b[0]][1]
    irq = ctx["irq_stack"]
    return not (irq <= regs < irq + S.thread_size) and el1h(ch[b[0]][2])


def cond_nested_irq(ctx):
    ch = ctx["chain"]
    if ctx["stack"] != "irq" or ch[-1][0] != "final":
        return False
    irq = ctx["irq_stack"]
    return any(irq <= ch[i][1] < irq + S.thread_size for i in boundaries(ch))


CONDITIONS = {"any": cond_any, "kernel_fault_in_syscall": cond_kernel_fault_in_syscall,
              "irq_in_fault": cond_irq_in_fault, "softirq_el1": cond_softirq_el1,
              "nested_irq": cond_nested_irq}


def describe(ch, pc):
    out = [symname(pc)]
    for e in ch:
        if e[0] == "frame":
            out.append(symname(e[2]))
        elif e[0] == "pt_regs":
            el = (e[2] >> 2) & 3
            out.append(f"[pt_regs EL{el}{'h' if e[2] & 1 else 't'} @{e[1]:#x}]")
            out.append(symname(e[3]) if el else f"user {e[3]:#x}")
        else:
            out.append(f"[{e[0]}]")
    return out


class KdumpInit(gdb.Command):
    def __init__(self):
        super().__init__("kdump-init", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        vmlinux, log = gdb.string_to_argv(arg)
        b = BTF(btf_section(vmlinux))
        regs = b.find("struct pt_regs")
        meta = b.find("struct frame_record_meta")
        S.off = {"pt_regs.stackframe": b.offsetof(regs, "stackframe")[0],
                 "pt_regs.pstate": b.offsetof(regs, "pstate")[0],
                 "pt_regs.pc": b.offsetof(regs, "pc")[0],
                 "pt_regs.sp": b.offsetof(regs, "sp")[0],
                 "pt_regs.x29": b.offsetof(regs, "regs[29]")[0],
                 "meta.type": b.offsetof(meta, "type")[0],
                 "meta.record": b.offsetof(meta, "record")[0],
                 "rq.curr": b.offsetof(b.find("struct rq"), "curr")[0],
                 "task.stack": b.offsetof(b.find("struct task_struct"), "stack")[0]}
        S.log = open(log, "a")  # noqa: SIM115 - kept open for the whole gdb session
        print(f"kdump-init: offsets from BTF {S.off}")


class KdumpRelocate(gdb.Command):
    def __init__(self):
        super().__init__("kdump-relocate", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        vmlinux, runtime = gdb.string_to_argv(arg)
        off = (int(runtime, 0) - sym("_text")) & MASK64
        S.kaslr_offset = off
        if off:
            gdb.execute(f"symbol-file -o {off:#x} {vmlinux}")
        print(f"kdump-relocate: KASLR offset {off:#x}")


class KdumpAt(gdb.Command):
    def __init__(self):
        super().__init__("kdump-at", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        name, location, cond, maxhits, timeout = gdb.string_to_argv(arg)
        maxhits, timeout = int(maxhits), float(timeout)
        rec = {"name": name, "location": location, "condition": cond, "dumped": False,
               "kaslr_offset": hex(S.kaslr_offset)}
        t0 = time.time()
        bp = None
        try:
            if S.thread_size is None:
                S.thread_size = sym("__end_init_stack") - sym("__start_init_stack")
            symb, _, off = location.partition("+")
            addr = sym(symb) + (int(off, 0) if off else 0)
            rec["address"] = hex(addr)
            bp = gdb.Breakpoint(f"*{addr:#x}", internal=True)
            hits = 0
            test = CONDITIONS[cond]
            while hits < maxhits and time.time() - t0 < timeout:
                cont(t0 + timeout - time.time())
                pc = reg("pc")
                if pc != addr:
                    rec.setdefault("other_stops", []).append(hex(pc))
                    continue
                hits += 1
                cpus = cpu_layout()
                sp = reg("sp")
                cpu, stack = where(sp, cpus)
                ctx = {"chain": chain(reg("x29")), "stack": stack, "cpu": cpu,
                       "irq_stack": cpus[cpu]["irq_stack"] if cpu is not None else 0,
                       "pc_name": symname(pc)}
                if not test(ctx):
                    continue
                th = gdb.selected_thread()
                rec.update(hits=hits, seconds=round(time.time() - t0, 2), cpu=cpu, stack=stack,
                           gdb_thread=th.num,
                           registers={r: hex(reg(r) & (0xFFFFFFFF if r == "cpsr" else MASK64))
                                      for r in ("pc", "sp", "x29", "x30", "cpsr")},
                           chain=describe(ctx["chain"], pc))
                out = gdb.execute(f"monitor dump-guest-memory {name}", to_string=True)
                rec["monitor_output"] = out.strip()
                rec["dumped"] = True
                break
            else:
                rec.update(hits=hits, seconds=round(time.time() - t0, 2),
                           error="condition not met within the hit/time limit")
        except Exception as e:  # keep going with the next dump
            rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            if bp is not None:
                bp.delete()
        S.log.write(json.dumps(rec) + "\n")
        S.log.flush()
        print(f"kdump-at {name}: {'dumped' if rec['dumped'] else 'NOT dumped'} "
              f"after {rec.get('hits')} hits, {rec.get('seconds')} s {rec.get('error', '')}")
        if rec.get("chain"):
            print("   " + " <- ".join(rec["chain"]))


KdumpInit()
KdumpRelocate()
KdumpAt()
