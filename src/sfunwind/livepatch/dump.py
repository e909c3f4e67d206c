"""The livepatch check's inputs taken from a vmcore: tasks, kallsyms per object, traces.

Glue between :mod:`sfunwind.kernel.program` / :mod:`sfunwind.unwind.kernel` and the plain
inputs of :mod:`sfunwind.livepatch.transition`.

* tasks: every thread of ``program.threads()`` (thread groups on ``init_task.tasks``, then each
  CPU's idle task); ``running`` is ``task_curr()`` (the CPU's ``rq->curr``); ``has_stack`` is
  ``try_get_task_stack()``: ``task->stack_refcount`` non-zero;
* symbols: vmlinux's kallsyms from the program's kallsyms-exact symbolizer; a module's from
  its ``struct module``'s ``mod_kallsyms`` in the dump (``modules`` list), with
  ``find_kallsyms_symbol()``'s sizes (next symbol, at most the end of ``MOD_TEXT``) and
  ``module_kallsyms_on_each_symbol()``'s order for ``sympos``;
* traces: :func:`sfunwind.unwind.kernel.trace_task` (a running task from its CPU's
  registers, a sleeping one from ``thread.cpu_context``), one unwind context per mode.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

from sfunwind.errors import MemoryFault, SfunwindError, UsageError, VmcoreFormatError
from sfunwind.livepatch.kallsyms import Kallsyms
from sfunwind.livepatch.transition import MAX_STACK_ENTRIES, TaskInfo
from sfunwind.unwind.trace import Mode, Trace

MAX_MODULES = 1 << 14
MAX_CPUS = 1 << 13
MAX_MODULE_SYMBOLS = 1 << 20
MODULE_NAME_LEN = 56  # MODULE_NAME_LEN = 64 - sizeof(unsigned long)
SHN_UNDEF = 0


class DumpInputs:
    """Tasks, kallsyms and a trace provider for one vmcore."""

    def __init__(self, program, *, sframe_path: str | Path | None = None,
                 cache_dir: str | Path | None = None,
                 max_entries: int = MAX_STACK_ENTRIES) -> None:
        self.program = program
        self.sframe_path = sframe_path
        self.cache_dir = cache_dir
        self.max_entries = max_entries
        self._ctx: dict[Mode, object] = {}
        self._tasks: dict[int, object] = {}
        self._traces: dict[tuple[int, Mode], Trace] = {}
        self._vmlinux: Kallsyms | None = None
        self._modules: dict[str, int] | None = None
        self._module_syms: dict[str, Kallsyms] = {}

    @classmethod
    def open(cls, vmcore: str | Path, vmlinux: str | Path, **kw) -> DumpInputs:
        from sfunwind.unwind.kernel import open_program

        return cls(open_program(vmcore, vmlinux), **kw)

    # -- tasks -----------------------------------------------------------------------------
    def tasks(self) -> list[TaskInfo]:
        prog = self.program
        try:
            refcount_off = prog.types.offsetof("struct task_struct", "stack_refcount")
        except SfunwindError:
            refcount_off = None
        out = []
        for t in prog.threads():
            self._tasks[t.address] = t
            has_stack = bool(t.stack)
            if has_stack and refcount_off is not None:
                with contextlib.suppress(MemoryFault):
                    has_stack = prog.memory.read_u32(t.address + refcount_off) != 0
            out.append(TaskInfo(pid=t.pid, comm=t.comm, task=t.address, tgid=t.tgid,
                                cpu=t.cpu, state=t.state, running=t.is_running,
                                idle_cpu=t.idle_of_cpu, cpu_online=True,
                                has_stack=has_stack))
        out.extend(self._offline_idle_tasks({t.idle_cpu for t in out}))
        return out

    def possible_cpus(self) -> list[int]:
        """``for_each_possible_cpu``: the bits of ``__cpu_possible_mask`` below
        ``nr_cpu_ids`` (the online CPUs when the mask cannot be read)."""
        prog = self.program
        try:
            nr = prog.memory.read_u32(prog.symbol("nr_cpu_ids"))
            if 0 < nr <= MAX_CPUS:
                mask = prog.memory.read(prog.symbol("__cpu_possible_mask"), (nr + 7) // 8)
                return [c for c in range(nr) if mask[c // 8] >> (c % 8) & 1]
        except (KeyError, MemoryFault):
            pass
        return list(prog.cpu_ids)

    def _offline_idle_tasks(self, known: set[int | None]) -> list[TaskInfo]:
        """Idle tasks of possible-but-offline CPUs (``idle_threads``, kernel/smpboot.c):
        klp_try_complete_transition() switches them without looking at their stacks."""
        prog = self.program
        online = set(prog.cpu_ids)
        out = []
        for cpu in self.possible_cpus():
            if cpu in online or cpu in known or prog.symbols.get("idle_threads") is None:
                continue
            try:
                idle = prog.read_u64(prog.per_cpu("idle_threads", cpu))
                comm = prog.task(idle).comm if idle else f"swapper/{cpu}"
            except (MemoryFault, SfunwindError):
                idle, comm = 0, f"swapper/{cpu}"
            out.append(TaskInfo(pid=0, comm=comm, task=idle, cpu=cpu, state="-",
                                idle_cpu=cpu, cpu_online=False, has_stack=bool(idle)))
        return out

    # -- traces ----------------------------------------------------------------------------
    def context(self, mode: Mode):
        if mode not in self._ctx:
            from sfunwind.unwind.kernel import context_for

            self._ctx[mode] = context_for(
                self.program, sframe_path=self.sframe_path, cache_dir=self.cache_dir,
                need_rows=mode in (Mode.SFRAME, Mode.SFRAME_V6))
        return self._ctx[mode]

    def has_sframe(self, mode: Mode = Mode.SFRAME) -> bool:
        """Whether the unwinder of *mode* has SFrame rows for this kernel."""
        return getattr(self.context(mode), "find_row", None) is not None

    def trace(self, task: TaskInfo, mode: Mode) -> Trace:
        key = (task.task, mode)
        if key not in self._traces:
            from sfunwind.unwind.kernel import trace_task

            obj = self._tasks.get(task.task)
            if obj is None:
                obj = self.program.task(task.task)
            self._traces[key] = trace_task(self.program, obj, mode, ctx=self.context(mode),
                                           max_entries=self.max_entries)
        return self._traces[key]

    # -- symbols ---------------------------------------------------------------------------
    def kallsyms(self, object_name: str | None) -> Kallsyms | None:
        if object_name is None or object_name == "vmlinux":
            if self._vmlinux is None:
                self._vmlinux = Kallsyms.from_symbolizer(self.program.symbols)
            return self._vmlinux
        mods = self.modules()
        if object_name not in mods:
            return None
        if object_name not in self._module_syms:
            self._module_syms[object_name] = self._module_kallsyms(object_name,
                                                                   mods[object_name])
        return self._module_syms[object_name]

    def modules(self) -> dict[str, int]:
        """Loaded modules: name → ``struct module`` address (the ``modules`` list)."""
        if self._modules is None:
            prog = self.program
            types = prog.types
            head = prog.symbols.get("modules")
            out: dict[str, int] = {}
            if head is not None:
                list_off = types.offsetof("struct module", "list")
                name_off = types.offsetof("struct module", "name")
                node = prog.read_u64(head)
                seen = {head}
                for _ in range(MAX_MODULES):
                    if node == head:
                        break
                    if node in seen:
                        raise VmcoreFormatError(f"modules list loops at {node:#x}")
                    seen.add(node)
                    mod = node - list_off
                    raw = prog.memory.read(mod + name_off, MODULE_NAME_LEN)
                    out[raw.split(b"\0", 1)[0].decode("utf-8", "replace")] = mod
                    node = prog.read_u64(node)
                else:
                    raise VmcoreFormatError(f"modules list longer than {MAX_MODULES}")
            self._modules = out
        return self._modules

    def _module_kallsyms(self, name: str, mod: int) -> Kallsyms:
        prog = self.program
        types = prog.types
        mem = prog.memory
        try:
            ks = prog.read_u64(mod + types.offsetof("struct module", "kallsyms"))
            symtab = mem.read_u64(ks + types.offsetof("struct mod_kallsyms", "symtab"))
            count = mem.read_u64(ks + types.offsetof("struct mod_kallsyms", "num_symtab"))
            strtab = mem.read_u64(ks + types.offsetof("struct mod_kallsyms", "strtab"))
            if count > MAX_MODULE_SYMBOLS:
                raise VmcoreFormatError(f"module {name}: {count} symbols is implausible")
            mem_off = types.offsetof("struct module", "mem")
            text_base = mem.read_u64(mod + mem_off)  # mem[MOD_TEXT].base (MOD_TEXT == 0)
            text_size = mem.read_u32(mod + mem_off + 8)
            raw = mem.read(symtab, 24 * count) if count else b""
            entries = []
            for i in range(1, count):  # ELF symbols start at 1
                st_name, _info, _other, shndx, value, _size = struct.unpack_from(
                    "<IBBHQQ", raw, 24 * i)
                if shndx == SHN_UNDEF:
                    continue
                sym = _read_cstring(mem, strtab + st_name)
                if not sym or sym.startswith("$"):  # unnamed and mapping symbols are skipped
                    continue
                entries.append((value, sym))
        except MemoryFault as exc:
            raise UsageError(f"module {name} is loaded but its symbols are not in the dump "
                             f"({exc}); give its functions as --range START-END") from None
        return Kallsyms(entries, end=text_base + text_size, object_name=name,
                        text=(text_base, text_base + text_size))


def _read_cstring(mem, address: int, limit: int = 512) -> str:
    """A NUL-terminated name, read page by page (the page after a short name may be absent
    from the dump)."""
    out = b""
    while len(out) < limit:
        chunk = min(4096 - (address + len(out)) % 4096, limit - len(out))
        data = mem.read(address + len(out), chunk)
        if b"\0" in data:
            return (out + data.split(b"\0", 1)[0]).decode("utf-8", "replace")
        out += data
    raise VmcoreFormatError(f"symbol name at {address:#x} longer than {limit} bytes")
