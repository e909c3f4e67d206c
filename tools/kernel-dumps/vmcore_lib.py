#!/usr/bin/env python3
"""Minimal, dependency-free reader for arm64 ELF vmcores as written by QEMU's
dump-guest-memory (and for the trimmed cores made by trim_vmcore.py).

  Core            ELF ET_CORE: physical PT_LOADs, NT_PRSTATUS per vCPU, VMCOREINFO
  KernelMemory    kernel virtual reads via a page-table walk from swapper_pg_dir
                  (4/16/64 KiB granule from PAGESIZE; levels from TCR_EL1.T1SZ; LPA2
                  descriptors when VA_BITS is 52)
  kernel_walk()   the traversal an independent unwinder needs: task list through
                  init_task (+ threads), per-CPU runqueues/irq_stack_ptr/per-cpu area,
                  whole task and IRQ stacks, kernel .data/.bss

Every physical page that is read is recorded in Core.touched, so running the
walk on a full core tells which pages a trimmed core must keep, and running it
on a trimmed core checks that they are all there (MissingMemory otherwise).
Only the Python standard library is used.
"""
import struct

PAGE = 4096
MASK64 = (1 << 64) - 1


class MissingMemory(Exception):
    """A physical address that has no data in the core file."""


class NotMapped(Exception):
    """A virtual address without a valid translation."""


def _vmci_int(v):
    v = v.strip()
    return int(v, 0) if v.lower().startswith("0x") or v.isdigit() else int(v, 16)


class Core:
    PRSTATUS_REG_OFF = 112  # offset of pr_reg in the aarch64 elf_prstatus

    def __init__(self, path):
        self.path = path
        self.f = open(path, "rb")  # noqa: SIM115 - the core stays open while it is read
        eh = self.f.read(64)
        if eh[:4] != b"\x7fELF" or eh[4] != 2 or eh[5] != 1:
            raise ValueError(f"{path}: not a little-endian ELF64 file")
        (self.e_type, self.e_machine, _v, _entry, phoff, _shoff, _flags, _ehsz,
         phentsize, phnum, _shentsz, _shnum, _shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", eh, 16)
        self.phdrs = []
        self.f.seek(phoff)
        raw = self.f.read(phentsize * phnum)
        for i in range(phnum):
            self.phdrs.append(struct.unpack_from("<IIQQQQQQ", raw, i * phentsize))
        # physical memory segments: (paddr, filesz, file offset)
        self.loads = sorted((p[4], p[5], p[2]) for p in self.phdrs if p[0] == 1 and p[5])
        self.notes = []
        for p in self.phdrs:
            if p[0] != 4:
                continue
            self.f.seek(p[2])
            data = self.f.read(p[5])
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
                pos += 12
                name = data[pos:pos + namesz].rstrip(b"\0").decode(errors="replace")
                pos += (namesz + 3) & ~3
                desc = data[pos:pos + descsz]
                pos += (descsz + 3) & ~3
                self.notes.append((name, ntype, desc))
        self.prstatus = []
        for name, ntype, desc in self.notes:
            if name == "CORE" and ntype == 1:
                regs = struct.unpack_from("<34Q", desc, self.PRSTATUS_REG_OFF)
                r = {f"x{i}": regs[i] for i in range(31)}
                r.update(sp=regs[31], pc=regs[32], pstate=regs[33],
                         pr_pid=struct.unpack_from("<I", desc, 32)[0])
                self.prstatus.append(r)
        self.vmcoreinfo = {}
        for name, _ntype, desc in self.notes:
            if name == "VMCOREINFO":
                for line in desc.rstrip(b"\0").decode(errors="replace").splitlines():
                    if "=" in line:
                        k, v = line.split("=", 1)
                        self.vmcoreinfo[k] = v
        self.touched = set()  # physical page frame numbers read so far

    def vmci(self, key, default=None):
        v = self.vmcoreinfo.get(key)
        return default if v is None else _vmci_int(v)

    def vmci_symbol(self, name):
        return int(self.vmcoreinfo[f"SYMBOL({name})"], 16)

    def has_phys(self, pa):
        return any(base <= pa < base + size for base, size, _ in self.loads)

    def read_phys(self, pa, n):
        out = bytearray()
        while n > 0:
            for base, size, off in self.loads:
                if base <= pa < base + size:
                    chunk = min(n, base + size - pa)
                    self.f.seek(off + pa - base)
                    out += self.f.read(chunk)
                    for pfn in range(pa // PAGE, (pa + chunk + PAGE - 1) // PAGE):
                        self.touched.add(pfn)
                    pa += chunk
                    n -= chunk
                    break
            else:
                raise MissingMemory(f"physical address {pa:#x} is not in the core")
        return bytes(out)


class KernelMemory:
    """Kernel (TTBR1) virtual memory of a Core, translated through swapper_pg_dir."""

    def __init__(self, core):
        self.core = core
        page_size = core.vmci("PAGESIZE", 4096)
        if page_size not in (4096, 16384, 65536):
            raise NotImplementedError(f"PAGESIZE {page_size} is not an arm64 granule")
        self.page_size = page_size
        self.gshift = page_size.bit_length() - 1  # 12, 14 or 16
        self.bpl = self.gshift - 3  # index bits per level
        t1sz = core.vmci("NUMBER(TCR_EL1_T1SZ)")
        self.va_bits = 64 - t1sz if t1sz else core.vmci("NUMBER(VA_BITS)")
        # 52-bit VA with a 4/16 KiB granule needs FEAT_LPA2 (TCR_EL1.DS=1): output
        # address bits [51:50] live in descriptor bits [9:8].  With 64 KiB (FEAT_LPA)
        # bits [51:48] live in [15:12].
        self.lpa2 = self.va_bits == 52 and page_size != 65536
        self.levels = -(-(self.va_bits - self.gshift) // self.bpl)
        self.start_level = 4 - self.levels
        self.kimage_voffset = core.vmci("NUMBER(kimage_voffset)")
        self.kaslr_offset = int(core.vmcoreinfo.get("KERNELOFFSET", "0"), 16)
        pac = core.vmcoreinfo.get("NUMBER(KERNELPACMASK)")
        self.pac_mask = _vmci_int(pac) if pac else 0
        self.pgd_pa = core.vmci_symbol("swapper_pg_dir") - self.kimage_voffset
        self._tlb = {}

    def _oa(self, desc):
        if self.lpa2:
            oa = desc & ((1 << 50) - 1) & ~(self.page_size - 1)
            return oa | (((desc >> 8) & 3) << 50)
        oa = desc & ((1 << 48) - 1) & ~(self.page_size - 1)
        if self.page_size == 65536:
            oa |= ((desc >> 12) & 0xF) << 48
        return oa

    def table_pages(self, va):
        """Physical addresses of the translation tables visited for va."""
        return self._walk(va)[1]

    def _walk(self, va):
        top = (va >> self.va_bits)
        if top != (1 << (64 - self.va_bits)) - 1:
            raise NotMapped(f"{va:#x} is not a kernel (TTBR1) address for {self.va_bits}-bit VA")
        table = self.pgd_pa
        tables = []
        for lvl in range(self.start_level, 4):
            shift = self.gshift + self.bpl * (3 - lvl)
            nbits = (self.va_bits - shift) if lvl == self.start_level else self.bpl
            idx = (va >> shift) & ((1 << nbits) - 1)
            tables.append(table)
            desc, = struct.unpack("<Q", self.core.read_phys(table + 8 * idx, 8))
            if not desc & 1:
                raise NotMapped(f"{va:#x}: invalid descriptor {desc:#x} at level {lvl}")
            if lvl == 3:
                if not desc & 2:
                    raise NotMapped(f"{va:#x}: reserved level-3 descriptor {desc:#x}")
                return self._oa(desc) | (va & (self.page_size - 1)), tables
            if not desc & 2:  # block
                size = 1 << shift
                return (self._oa(desc) & ~(size - 1)) | (va & (size - 1)), tables
            table = self._oa(desc)
        raise AssertionError("unreachable")

    def translate(self, va):
        va &= MASK64  # per-cpu address arithmetic wraps around
        mask = self.page_size - 1
        page = va & ~mask
        pa = self._tlb.get(page)
        if pa is None:  # the walk records the table pages in core.touched
            pa = self._walk(page)[0]
            self._tlb[page] = pa
        return pa | (va & mask)

    def read(self, va, n):
        va &= MASK64
        out = bytearray()
        while n > 0:
            chunk = min(n, self.page_size - (va & (self.page_size - 1)))
            out += self.core.read_phys(self.translate(va), chunk)
            va += chunk
            n -= chunk
        return bytes(out)

    def u64(self, va):
        return struct.unpack("<Q", self.read(va, 8))[0]

    def u32(self, va):
        return struct.unpack("<I", self.read(va, 4))[0]

    def i32(self, va):
        return struct.unpack("<i", self.read(va, 4))[0]

    def int_(self, va, size, signed=False):
        return int.from_bytes(self.read(va, size), "little", signed=signed)

    def cstr(self, va, n):
        return self.read(va, n).split(b"\0", 1)[0].decode(errors="replace")

    def strip_pac(self, addr):
        """Strip a pointer-authentication code from a kernel text address."""
        return addr | self.pac_mask if self.pac_mask else addr


def kernel_walk(core, layout, log=None):
    """Read what an independent arm64 unwinder needs, using only the core and a
    layout dict (struct offsets + link-time symbol addresses, see
    export_layout.py).  Returns a summary dict; raises MissingMemory/NotMapped
    if something is absent."""
    km = KernelMemory(core)
    koff = km.kaslr_offset
    S = {k: int(v["address"], 16) + koff for k, v in layout["symbols"].items()}
    T = layout["structs"]["struct task_struct"]
    TS = layout["member_sizes"]["struct task_struct"]
    RQ = layout["structs"]["struct rq"]
    thread_size = layout["constants"]["THREAD_SIZE"]
    irq_stack_size = layout["constants"]["IRQ_STACK_SIZE"]
    ncpu = len(core.prstatus)
    summary = {"cpus": [], "tasks": []}

    # sanity: a wrong symbol table or KASLR offset must not turn into empty reads
    data_size = S["_end"] - S["_sdata"]
    pcpu_size = S["__per_cpu_end"] - S["__per_cpu_start"]
    if not (0 < data_size < 1 << 28 and 0 < pcpu_size < 1 << 24 and 0 < thread_size <= 1 << 20):
        raise ValueError(f"implausible layout: .data/.bss {data_size:#x}, per-cpu {pcpu_size:#x}, "
                         f"THREAD_SIZE {thread_size:#x}")

    # per-CPU data
    pcpu_off = [km.u64(S["__per_cpu_offset"] + 8 * cpu) for cpu in range(ncpu)]
    idle_tasks = []
    for cpu in range(ncpu):
        off = pcpu_off[cpu]
        km.read(S["__per_cpu_start"] + off, pcpu_size)          # whole static per-cpu area
        rq = S["runqueues"] + off
        km.read(rq, RQ["size"])
        curr = km.u64(rq + RQ["curr"])
        idle = km.u64(rq + RQ["idle"])
        irq_stack = km.u64(S["irq_stack_ptr"] + off)
        km.read(irq_stack, irq_stack_size)
        idle_tasks.append(idle)
        summary["cpus"].append({"cpu": cpu, "per_cpu_offset": off, "curr": curr, "idle": idle,
                                "irq_stack": irq_stack})

    # kernel image .data/.bss
    km.read(S["_sdata"], data_size)

    # all tasks: init_task.tasks list, and each thread group's thread list
    def read_task(task):
        km.read(task, T["size"])
        stack = km.u64(task + T["stack"])
        km.read(stack, thread_size)
        def field(name, signed=False):
            return km.int_(task + T[name], TS[name], signed)
        return {"task": task, "pid": field("pid", True), "tgid": field("tgid", True),
                "comm": km.cstr(task + T["comm"], TS["comm"]), "stack": stack,
                "cpu": field("thread_info.cpu") if "thread_info.cpu" in T else None,
                "on_cpu": field("on_cpu")}

    seen = set()
    init = S["init_task"]
    head = init + T["tasks"]
    node = head
    groups = []
    for _ in range(100000):
        groups.append(node - T["tasks"])
        node = km.u64(node)
        if node == head:
            break
    else:
        raise RuntimeError("task list does not terminate")
    for leader in groups:
        signal = km.u64(leader + T["signal"])
        th_head = signal + layout["structs"]["struct signal_struct"]["thread_head"]
        members = []
        if signal:
            n = km.u64(th_head)
            for _ in range(100000):
                if n == th_head:
                    break
                members.append(n - T["thread_node"])
                n = km.u64(n)
        for t in [leader, *members]:
            if t in seen:
                continue
            seen.add(t)
            summary["tasks"].append(read_task(t))
    for cpu, t in enumerate(idle_tasks):
        if t not in seen:
            seen.add(t)
            e = read_task(t)
            e["idle_of_cpu"] = cpu
            summary["tasks"].append(e)
    if log:
        log(f"{len(summary['tasks'])} tasks, {ncpu} cpus, {len(core.touched)} pages read")
    return summary
