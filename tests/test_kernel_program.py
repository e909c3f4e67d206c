"""KernelProgram on every fixture vmcore against drgn 0.3.0's reference output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from kernel_fixtures import (
    DUMPS,
    TASK_COUNT,
    VMLINUX,
    drgn_reference,
    hexint,
    program,
    vmcore,
    vmlinux_for,
)
from sfunwind.errors import MemoryFault, MismatchError, VmcoreFormatError
from sfunwind.kernel.program import (
    FRAME_META_TYPE_FINAL,
    KernelProgram,
    StackInfo,
    task_state_char,
)
from sfunwind.memory.files import materialize


def _task_key(t: dict) -> tuple:
    return (t["pid"], t["tgid"], t["comm"], t["state"], t["cpu"], t["on_cpu"],
            t["running"], t.get("idle_of_cpu"), hexint(t["stack"]))


@pytest.mark.parametrize("dump", DUMPS)
def test_task_list_equals_drgn(dump):
    prog = program(dump)
    ref = drgn_reference(dump)
    mine = {t.address: (t.pid, t.tgid, t.comm, t.state, t.cpu, t.on_cpu, t.is_running,
                        t.idle_of_cpu, t.stack) for t in prog.threads()}
    theirs = {hexint(t["task"]): _task_key(t) for t in ref["tasks"]}
    assert len(mine) == len(ref["tasks"]) == TASK_COUNT[dump.split("/")[0]]
    assert mine == theirs


@pytest.mark.parametrize("dump", DUMPS)
def test_saved_context_equals_drgn(dump):
    prog = program(dump)
    ref = {hexint(t["task"]): t for t in drgn_reference(dump)["tasks"]}
    for task in prog.threads():
        want = {k: hexint(v) for k, v in ref[task.address]["cpu_context"].items()}
        assert task.cpu_context.as_dict() == want, task


@pytest.mark.parametrize("dump", DUMPS)
def test_cpus_equal_drgn(dump):
    prog = program(dump)
    ref = drgn_reference(dump)
    cpus = prog.cpus()
    assert [c.index for c in cpus] == [c["cpu"] for c in ref["cpus"]]
    for cpu, want in zip(cpus, ref["cpus"], strict=True):
        assert cpu.prstatus is not None
        assert cpu.prstatus.pr_pid == want["prstatus_pr_pid"]
        assert cpu.prstatus.as_dict() == {k: hexint(v) for k, v in want["prstatus"].items()}
        assert cpu.per_cpu_offset == hexint(want["per_cpu_offset"])
        assert cpu.curr == hexint(want["curr_task"])
        assert cpu.idle == hexint(want["idle_task"])
        assert cpu.curr_task.pid == want["curr_pid"]
        assert cpu.curr_task.comm == want["curr_comm"]
        assert cpu.irq_stack == StackInfo("irq", hexint(want["irq_stack_ptr"]),
                                          hexint(want["irq_stack_ptr"]) + 0x4000, cpu.index)
        # the overflow stack is the per-cpu array itself, inside this CPU's per-cpu area
        assert cpu.overflow_stack.low == (prog.symbol("overflow_stack") + cpu.per_cpu_offset) % 2**64
        assert cpu.overflow_stack.size == 4096
        # this kernel has SDEI configured but QEMU's firmware has none: never allocated
        assert cpu.sdei_normal_stack is None and cpu.sdei_critical_stack is None


@pytest.mark.parametrize("dump", DUMPS)
def test_vmcoreinfo_and_kaslr(dump):
    prog = program(dump)
    ref = drgn_reference(dump)
    assert prog.kaslr_offset == hexint(ref["kaslr_offset"])
    assert prog.build_id == ref["build_id"] == prog.vmlinux_build_id
    assert prog.vmcoreinfo.osrelease == ref["osrelease"]
    # 52-bit VA: PAC in bits 63:52; 48-bit VA (va48): bits 63:48
    assert prog.pac_mask == (0xFFFF000000000000 if dump.startswith("va48") else
                             0xFFF0000000000000)
    assert prog.pac_mask == int(ref["vmcoreinfo"]["NUMBER(KERNELPACMASK)"], 16)
    for key, value in ref["vmcoreinfo"].items():
        assert prog.vmcoreinfo.get(key) == value


@pytest.mark.parametrize("dump", DUMPS)
def test_final_record_on_every_task_stack(dump):
    """Translation check: every task stack (vmalloc: a 5-level LPA2 walk) ends with the FINAL
    frame_record_meta at stack + 0x3fe8 = THREAD_SIZE - sizeof(pt_regs) + 296."""
    prog = program(dump)
    assert prog.layout.final_record_offset == 0x3FE8
    for task in prog.threads():
        assert task.final_record == task.stack + 0x3FE8
        raw = prog.memory.read(task.final_record, 24)
        assert raw[:16] == bytes(16), task
        assert int.from_bytes(raw[16:], "little") == FRAME_META_TYPE_FINAL, task
        # the task stack holds its own saved frame pointer (blocked tasks) or sp
        assert task.stack_info.contains(task.cpu_context.sp) or task.is_running


def test_layout_constants():
    lay = program(DUMPS[0]).layout
    assert (lay.thread_size, lay.irq_stack_size, lay.overflow_stack_size) == (16384, 16384, 4096)
    assert (lay.pt_regs_size, lay.pt_regs_stackframe) == (320, 296)
    assert (lay.frame_record_meta_size, lay.frame_record_meta_type) == (24, 16)
    assert lay.kunwind_source == {"KUNWIND_SOURCE_UNKNOWN": 0, "KUNWIND_SOURCE_FRAME": 1,
                                  "KUNWIND_SOURCE_CALLER": 2, "KUNWIND_SOURCE_TASK": 3,
                                  "KUNWIND_SOURCE_REGS_PC": 4}


def test_code_addresses_for_the_unwinder():
    for dump in ("nokaslr/irq-in-fault", "kaslr/irq-in-fault"):
        prog = program(dump)
        koff = prog.kaslr_offset
        assert prog.symbol("call_on_irq_stack") == 0xFFFF80008002B050 + koff
        assert prog.return_to_handler is not None
        assert prog.symbols.lookup(prog.return_to_handler).name == "return_to_handler"
        assert prog.kretprobe_trampoline is not None
        names = {name for name, _, _ in prog.entry_text_ranges}
        assert "entry" in names
        for _, lo, hi in prog.entry_text_ranges:
            assert prog.symbols.is_kernel_text(lo) and lo <= hi
        # the vectors are entry text
        entry = next(r for r in prog.entry_text_ranges if r[0] == "entry")
        assert entry[1] <= prog.symbol("el1h_64_irq") < entry[2]


def test_running_task_stacks_include_cpu_stacks():
    prog = program("nokaslr/nested-irq")
    for cpu in prog.cpus():
        task = cpu.curr_task
        assert task.is_running
        names = [s.name for s in task.stacks()]
        assert names == ["task", "irq", "overflow"]
        # the CPU was stopped on its IRQ stack (a nested IRQ): sp lies there
        assert cpu.irq_stack.contains(cpu.prstatus.sp)


def test_efi_runtime_stack_only_for_the_task_inside_an_efi_call(monkeypatch):
    """STACKINFO_EFI: the EFI runtime stack [efi_rt_stack_top - THREAD_SIZE,
    efi_rt_stack_top) is accessible only to the running task whose stack holds the SP saved
    at efi_rt_stack_top[-1] (current_in_efi()).  The trimmed dumps lack efi_rt_stack_top's
    page: no EFI stack (inaccessible, as outside a call), never an error.  The two words are
    then supplied as a dump of a machine inside an EFI call would hold them."""
    prog = program("nokaslr/nested-irq")
    assert prog.efi_rt_stack() is None  # efi_rt_stack_top's page is not in the dump
    cpu = prog.cpus()[0]
    inside, other = cpu.curr_task, prog.cpus()[1].curr_task
    top_var = prog.symbol("efi_rt_stack_top")
    efi_top = 0xFFFF800082F10000
    saved_sp = inside.stack_info.high - 0x400
    real_read = prog.read_u64
    words = {top_var: efi_top, efi_top - 8: saved_sp}
    monkeypatch.setattr(prog, "read_u64", lambda a: words[a] if a in words else real_read(a))
    efi, sp = prog.efi_rt_stack()
    assert (efi.name, efi.low, efi.high, sp) == ("efi", efi_top - 0x4000, efi_top, saved_sp)
    assert [s.name for s in inside.stacks(running_cpu=cpu.index)] == [
        "task", "irq", "overflow", "efi"]
    # another running task, a blocked task: the saved SP is not on their stacks
    assert [s.name for s in other.stacks()] == ["task", "irq", "overflow"]
    blocked = next(t for t in prog.threads() if not t.is_running)
    assert [s.name for s in blocked.stacks()] == ["task"]
    # efi_rt_stack_top NULL: EFI runtime services never set up
    words[top_var] = 0
    assert prog.efi_rt_stack() is None
    assert [s.name for s in inside.stacks(running_cpu=cpu.index)] == ["task", "irq", "overflow"]


def test_task_state_letters():
    assert task_state_char(0) == "R"
    assert task_state_char(0x1) == "S"
    assert task_state_char(0x2) == "D"
    assert task_state_char(0x402) == "I"  # TASK_IDLE
    assert task_state_char(0x2001) == "S"  # TASK_INTERRUPTIBLE | TASK_FREEZABLE (init here)
    assert task_state_char(0, 0x20) == "Z"  # EXIT_ZOMBIE
    assert task_state_char(0x8) == "t"
    assert task_state_char(0x8000) == "D"  # frozen tasks report as uninterruptible


def test_wrong_vmlinux_build_id_refused(tmp_path):
    """A vmlinux whose GNU build ID differs from VMCOREINFO's BUILD-ID is refused."""
    src = materialize(VMLINUX)
    data = bytearray(src.read_bytes())
    build_id = bytes.fromhex("2fd286f94bd367f15622983529e421b16aa9cd20")
    at = data.find(build_id)
    assert at > 0
    data[at] ^= 0xFF
    other = tmp_path / "other-vmlinux"
    other.write_bytes(data)
    with pytest.raises(MismatchError, match="build ID"):
        KernelProgram.open(vmcore("nokaslr/irq-in-fault"), other)


def test_wrong_kernel_refused_by_addresses(tmp_path):
    """A vmcore without BUILD-ID (older kernels) is still checked: its SYMBOL(_stext) must be
    the vmlinux's plus the KASLR offset.  Pretending the KASLR dump is unrelocated fails."""
    raw = bytearray(materialize(vmcore("kaslr/irq-in-fault")).read_bytes())
    at = raw.find(b"BUILD-ID=")
    raw[at:at + 9] = b"BUILD-XX="
    at = raw.find(b"KERNELOFFSET=262af8800000")
    raw[at:at + 25] = b"KERNELOFFSET=000000000000"
    path = tmp_path / "no-build-id.vmcore"
    path.write_bytes(raw)
    with pytest.raises(MismatchError, match="_stext"):
        KernelProgram.open(path, VMLINUX)


def test_truncated_vmcore_gives_typed_errors(tmp_path):
    full = materialize(vmcore("nokaslr/irq-in-fault")).read_bytes()
    notes_end = 0x2000  # well inside the PT_NOTE segment of these dumps
    for size in (0, 10, 64, 200, notes_end, len(full) // 3, len(full) - 4096):
        path = tmp_path / f"cut-{size}.vmcore"
        path.write_bytes(full[:size])
        try:
            prog = KernelProgram.open(path, VMLINUX)
            assert prog.core.truncated
            for task in prog.threads():
                prog.memory.read(task.stack, prog.layout.thread_size)
            last = prog.core.segments[-1]
            with pytest.raises(MemoryFault, match="truncated") as fault:
                prog.core.read_physical(last.paddr + last.declared_size - 8, 8)
            assert fault.value.physical == last.paddr + last.declared_size - 8
            raise fault.value
        except (VmcoreFormatError, MemoryFault) as exc:
            assert str(exc)
            if isinstance(exc, VmcoreFormatError):
                assert str(path) in str(exc)
        else:
            pytest.fail(f"a vmcore cut to {size} bytes read without error")


def test_memory_fault_names_virtual_and_physical_address():
    prog = program("nokaslr/irq-in-fault")
    text = prog.symbol("schedule")  # .text pages are not in the trimmed dump
    with pytest.raises(MemoryFault) as info:
        prog.memory.read(text, 4)
    assert info.value.address == text
    assert info.value.physical == text - prog.memory.tr.kimage_voffset
    assert f"{text:#x}" in str(info.value) and "phys" in str(info.value)
    with pytest.raises(MemoryFault, match="not a kernel address"):
        prog.memory.read(0x1234, 8)


def test_cli_tasks_json_and_info():
    dump = "kaslr/el1-abort"
    cmd = [sys.executable, "-m", "sfunwind.cli.main", "kernel", "tasks", str(vmcore(dump)),
           "-s", str(VMLINUX), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    ref = drgn_reference(dump)
    assert sorted((r["pid"], r["tgid"], r["comm"], r["state"], r["cpu"], r["on_cpu"])
                  for r in rows) == \
        sorted((t["pid"], t["tgid"], t["comm"], t["state"], t["cpu"], t["on_cpu"])
               for t in ref["tasks"])
    for r in rows:
        assert int(r["stack_high"], 16) - int(r["stack"], 16) == 0x4000
        names = [s["name"] for s in r["stacks"]]
        assert names == (["task", "irq", "overflow"] if r["running"] else ["task"])
        assert r["stacks"][0] == {"name": "task", "low": r["stack"], "high": r["stack_high"]}
    info = subprocess.run([sys.executable, "-m", "sfunwind.cli.main", "kernel", "info",
                           str(vmcore(dump)), "-s", str(VMLINUX), "--json"],
                          capture_output=True, text=True, check=True).stdout
    d = json.loads(info)
    assert d["kaslr_offset"] == "0x262af8800000" and d["levels"] == 5 and d["lpa2"]
    assert [m["name"] for m in d["modules"]] == ["qemu_fw_cfg"]
    assert d["vmcore"] == str(vmcore(dump))


def test_cli_mismatch_exit_code(tmp_path):
    other = tmp_path / "vmlinux"
    data = bytearray(materialize(VMLINUX).read_bytes())
    at = data.find(bytes.fromhex("2fd286f94bd367f1"))
    data[at] ^= 1
    other.write_bytes(data)
    res = subprocess.run([sys.executable, "-m", "sfunwind.cli.main", "kernel", "tasks",
                          str(vmcore("nokaslr/el1-abort")), "-s", str(other)],
                         capture_output=True, text=True)
    assert res.returncode == 5, res.stderr
    assert "build ID" in res.stderr and "Traceback" not in res.stderr


def test_cli_truncated_exit_code(tmp_path):
    cut = tmp_path / "cut.vmcore"
    shutil.copyfile(materialize(vmcore("nokaslr/el1-abort")), cut)
    with open(cut, "r+b") as f:
        f.truncate(100)
    res = subprocess.run([sys.executable, "-m", "sfunwind.cli.main", "kernel", "info",
                          str(cut), "-s", str(VMLINUX)], capture_output=True, text=True)
    assert res.returncode == 3, res.stderr
    assert "vmcore:" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("dump", ["kaslr/irq-in-fault", "nokaslr/hrtimer-plus12"])
def test_start_states(dump):
    prog = program(dump)
    ref = drgn_reference(dump)
    running = {hexint(c["curr_task"]): c for c in ref["cpus"]}
    for task in prog.threads():
        st = task.start_state()
        if task.address in running:
            cpu = running[task.address]
            assert st.cpu == cpu["cpu"] and st.pc == hexint(cpu["prstatus"]["pc"])
            assert st.kind == ("regs" if hexint(cpu["prstatus"]["pstate"]) & 0xC else "user")
            assert st.sp == hexint(cpu["prstatus"]["sp"])
        else:
            assert st.kind == "task" and st.lr is None
            assert (st.pc, st.fp, st.sp) == (task.cpu_context.pc, task.cpu_context.fp,
                                             task.cpu_context.sp)
            assert prog.symbols.lookup(st.pc).name == "__switch_to"
    kinds = sorted(t.start_state().kind for t in prog.threads()
                   if t.address in running)
    assert kinds == (["regs", "user"] if dump.startswith("kaslr") else ["regs", "regs"])


def test_pt_regs_at_top_of_stack_and_in_exception_frames():
    prog = program("nokaslr/el1-abort")
    for task in prog.threads():
        regs = prog.pt_regs(task.pt_regs)
        assert (regs.meta_fp, regs.meta_lr, regs.meta_type) == (0, 0, FRAME_META_TYPE_FINAL)
        assert prog.pt_regs_of_meta(task.final_record) == regs
        if task.comm == "dd" and not task.is_running:
            assert regs.from_user  # user tasks entered the kernel from EL0
    # CPU1 stopped in el1_abort: x29 of its caller chain reaches the PT_REGS meta record of
    # the EL1 data abort, whose pc is the interrupted __arch_copy_to_user
    cpu = prog.cpu(1)
    fp = cpu.prstatus.fp
    for _ in range(10):
        rec = prog.frame_record(fp)
        if rec == (0, 0):
            break
        fp = rec[0]
    assert prog.frame_record_meta_type(fp) == 2
    exc = prog.pt_regs_of_meta(fp)
    assert not exc.from_user
    assert prog.symbols.lookup(exc.pc).name == "__arch_copy_to_user"
    assert cpu.curr_task.stack_info.contains(exc.address, prog.layout.pt_regs_size)


def test_kdump_style_prstatus_matched_by_pid(tmp_path):
    """kdump writes PRSTATUS with pr_pid = the Linux pid running there, in any order: the
    registers still go to the right CPU."""
    import struct as _struct

    from kernel_fixtures import core_notes, core_pages, write_core
    from sfunwind.memory.elfcore import Note, open_core

    name = "nokaslr/irq-in-fault"
    core = open_core(vmcore(name))
    ref = drgn_reference(name)
    pids = [c["curr_pid"] for c in ref["cpus"]]
    assert pids[0] != pids[1]
    prs = [n for n in core.notes if n.name == "CORE" and n.type == 1]
    others = [n for n in core.notes if not (n.name == "CORE" and n.type == 1)]
    swapped = []
    for cpu in (1, 0):
        desc = bytearray(prs[cpu].desc)
        _struct.pack_into("<i", desc, 32, pids[cpu])
        swapped.append(Note("CORE", 1, bytes(desc), 0))
    core.notes[:] = swapped + others
    path = tmp_path / "kdump-style.vmcore"
    write_core(path, core_notes(core), core_pages(core))
    prog = KernelProgram.open(path, VMLINUX)
    assert [p.pr_pid for p in prog.core.prstatus] == [pids[1], pids[0]]
    for cpu, want in zip(prog.cpus(), ref["cpus"], strict=True):
        assert cpu.prstatus.pc == hexint(want["prstatus"]["pc"])
        assert cpu.curr_task.pid == cpu.prstatus.pr_pid


def test_kretprobe_instances_walk(monkeypatch):
    """No kretprobe was active in the fixture kernels (every list is empty); a list built
    with the kernel's own layout (BTF offsets) in front of the dump's memory is decoded in
    order, and a loop is a typed error."""
    from sfunwind.memory.base import AddressSpace, SparseMemory

    prog = program("nokaslr/el1-abort")
    task = prog.threads()[3]
    assert all(prog.kretprobe_instances(t) == [] for t in prog.threads())
    t = prog.types
    link = t.offsetof("struct kretprobe_instance", "llist")
    ret_off = t.offsetof("struct kretprobe_instance", "ret_addr")
    fp_off = t.offsetof("struct kretprobe_instance", "fp")
    base = 0xFFF0_0000_7000_0000
    insts = [base + 0x100 * i for i in range(3)]
    chunks = []
    for i, inst in enumerate(insts):
        blob = bytearray(0x80)
        nxt = insts[i + 1] + link if i + 1 < len(insts) else 0
        blob[link:link + 8] = nxt.to_bytes(8, "little")
        blob[ret_off:ret_off + 8] = (0xFFFF800080001000 + i).to_bytes(8, "little")
        blob[fp_off:fp_off + 8] = (0xFFFF800080020000 + 0x10 * i).to_bytes(8, "little")
        chunks.append((inst, bytes(blob)))
    fake = SparseMemory(chunks)
    real = prog.memory

    class Overlay(AddressSpace):
        def read(self, address, size):
            return fake.read(address, size) if fake.is_mapped(address, size) else \
                real.read(address, size)

    monkeypatch.setattr(prog, "memory", Overlay())
    monkeypatch.setattr(type(task), "kretprobe_instances",
                        property(lambda self: insts[0] + link))
    assert prog.kretprobe_instances(task) == [
        (0xFFFF800080001000 + i, 0xFFFF800080020000 + 0x10 * i) for i in range(3)]
    loop = bytearray(fake.read(insts[2], 0x80))
    loop[link:link + 8] = (insts[0] + link).to_bytes(8, "little")
    fake2 = SparseMemory([*chunks[:2], (insts[2], bytes(loop))])
    fake.read = fake2.read  # type: ignore[method-assign]
    fake.is_mapped = fake2.is_mapped  # type: ignore[method-assign]
    with pytest.raises(VmcoreFormatError, match="loops"):
        prog.kretprobe_instances(task)


def test_vmlinux_path_recorded():
    assert program("nokaslr/el1-abort").vmlinux_path == str(VMLINUX)


@pytest.mark.parametrize("dump", DUMPS)
def test_lists_are_consistent(dump):
    """next->prev == node along every list walked (no warning on the real dumps)."""
    prog = KernelProgram.open(vmcore(dump), vmlinux_for(dump))
    prog.threads()
    assert prog.warnings == []


def test_list_corruption_is_reported(tmp_path):
    """A tasks.next that skips a task: the walk continues, the skip is reported."""
    from kernel_fixtures import core_notes, core_pages, write_core
    from sfunwind.memory.elfcore import open_core

    dump = "nokaslr/el1-abort"
    prog = KernelProgram.open(vmcore(dump), VMLINUX)
    tasks = [t for t in prog.threads() if t.idle_of_cpu is None]
    a, b, c = tasks[4], tasks[5], tasks[6]
    off = prog.layout.task_tasks
    assert prog.read_u64(a.address + off) == b.address + off
    core = open_core(vmcore(dump))
    pages = core_pages(core)
    pa = prog.memory.translate(a.address + off)
    page = bytearray(pages[pa // 4096])
    page[pa % 4096:pa % 4096 + 8] = (c.address + off).to_bytes(8, "little")
    pages[pa // 4096] = bytes(page)
    path = tmp_path / "skip.vmcore"
    write_core(path, core_notes(core), pages)
    bad = KernelProgram.open(path, VMLINUX)
    got = {t.address for t in bad.threads()}
    assert b.address not in got and len(got) == len(prog.threads()) - 1
    assert len(bad.warnings) == 1 and "prev" in bad.warnings[0]


def test_frame_meta_types():
    lay = program("kaslr/el1-abort").layout
    # #defines in this kernel (no BTF enumerator): the documented values
    assert program("kaslr/el1-abort").types._string_offset("FRAME_META_TYPE_FINAL") is None
    assert (lay.meta_final, lay.meta_pt_regs) == (1, 2)
    assert lay.frame_meta_types["FRAME_META_TYPE_NONE"] == 0


@pytest.mark.parametrize("dump", ["nokaslr/el1-abort", "kaslr/irq-in-fault", "16k/el1-abort"])
def test_kernel_text_after_boot(dump):
    """The dumps were taken long after boot (system_state == SYSTEM_RUNNING): init text no
    longer counts as kernel text, .text does."""
    prog = program(dump)
    assert prog.system_state == prog.types.enum("enum system_states")["SYSTEM_RUNNING"]
    assert prog.init_text_freed
    assert prog.is_kernel_text(prog.symbol("schedule"))
    assert prog.symbols.is_kernel_text(prog.symbol("start_kernel"))  # the static range
    assert not prog.is_kernel_text(prog.symbol("start_kernel"))  # ... freed at runtime
    assert not prog.is_kernel_text(prog.symbol("init_task"))


def test_missing_symbol_and_type_are_typed_errors():
    from sfunwind.errors import SfunwindError
    from sfunwind.kernel.program import KernelLayout, MissingKernelData

    prog = program("nokaslr/el1-abort")
    with pytest.raises(MissingKernelData) as err:
        prog.symbol("no_such_symbol_xyz")
    assert isinstance(err.value, KeyError) and isinstance(err.value, SfunwindError)
    assert str(err.value).endswith("no symbol 'no_such_symbol_xyz'")
    assert err.value.exit_code == 3

    class NoTasks:  # a type source without struct task_struct
        def __getattr__(self, name):
            return getattr(prog.types, name)

        def offsetof(self, type_name, path):
            if type_name == "struct task_struct":
                raise KeyError(f"{type_name} has no member {path!r}")
            return prog.types.offsetof(type_name, path)

        def member(self, type_name, path):
            if type_name == "struct task_struct":
                raise KeyError(f"{type_name} has no member {path!r}")
            return prog.types.member(type_name, path)

    with pytest.raises(KeyError):
        KernelLayout.from_types(NoTasks(), 16384)
    with pytest.raises(MissingKernelData, match="task_struct"):
        KernelProgram(prog.core, prog.symbols, NoTasks())


def test_corrupt_vmlinux_is_a_typed_error(tmp_path):
    """Truncated or bit-flipped section headers of the vmlinux: a typed error (or, when a
    flip hits nothing used, a correct task list), never a traceback."""
    import random
    import struct as _struct

    from sfunwind.errors import SfunwindError
    from sfunwind.kernel.program import clear_caches

    raw = materialize(VMLINUX).read_bytes()
    shoff = _struct.unpack_from("<Q", raw, 0x28)[0]
    rng = random.Random(7)
    variants = [raw[:n] for n in (10, 64, 4096, len(raw) // 2, len(raw) - 100)]
    for _ in range(12):
        data = bytearray(raw)
        for _ in range(3):
            data[shoff + rng.randrange(len(raw) - shoff)] ^= 1 << rng.randrange(8)
        variants.append(bytes(data))
    errors = 0
    want = len(program("nokaslr/el1-abort").threads())
    for i, data in enumerate(variants):
        path = tmp_path / f"vmlinux{i}"
        path.write_bytes(data)
        clear_caches()
        try:
            assert len(KernelProgram.open(vmcore("nokaslr/el1-abort"), path).threads()) == want
        except SfunwindError as exc:
            errors += 1
            assert str(path) in str(exc)
        path.unlink()
    clear_caches()
    assert errors >= 5


@pytest.mark.parametrize("dump", ["nokaslr/el1-abort", "kaslr/irq-in-fault", "va48/el1-abort",
                                  "16k/irq-in-fault"])
def test_modules(dump):
    """The guest loads one module, qemu_fw_cfg (guest-init.sh): its text is kernel text and
    its symbols print like /proc/kallsyms would size them (distance to the next symbol, the
    $x/$d mapping symbols skipped)."""
    prog = program(dump)
    mods = prog.modules.modules
    assert [m.name for m in mods] == ["qemu_fw_cfg"]
    mod = mods[0]
    lo, hi = mod.text
    assert lo % prog.memory.page_size == 0 and (hi - lo) % prog.memory.page_size == 0
    assert mod.init_text is None  # freed after the module's init ran
    assert prog.modules.lookup(lo + 4) is None  # only "$x" precedes it
    info = prog.lookup_symbol(lo + 0xC)
    assert (info.name, info.offset, info.module) == ("fw_cfg_sysfs_attr_show", 4, "qemu_fw_cfg")
    nxt = prog.lookup_symbol(info.address + info.size)
    assert nxt.name == "fw_cfg_showrev" and info.size == 0x40 and info.elf_size == 44
    assert prog.format_symbol(info.address + 0x10, backtrace=True) == \
        "fw_cfg_sysfs_attr_show+0x10/0x40 [qemu_fw_cfg]"
    assert prog.is_kernel_text(lo + 0xC) and not prog.is_kernel_text(hi)
    assert prog.format_symbol(prog.symbol("schedule") + 4) == \
        prog.symbols.format(prog.symbol("schedule") + 4)  # vmlinux symbols: no [module]
