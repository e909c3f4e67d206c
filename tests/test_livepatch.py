"""klp_try_switch_task() semantics on synthetic traces, patch ranges, and the .ko parser."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sfunwind.errors import ElfFormatError, MemoryFault, UsageError
from sfunwind.livepatch.kallsyms import Kallsyms
from sfunwind.livepatch.ko import read_livepatch_module
from sfunwind.livepatch.patch import (
    UNPATCHING,
    FuncSpec,
    PatchSpec,
    build_ranges,
    parse_range,
)
from sfunwind.livepatch.render import format_comparison, format_result
from sfunwind.livepatch.transition import (
    MAX_STACK_ENTRIES,
    FuncRange,
    TaskInfo,
    Verdict,
    compare,
    decide_task,
    try_complete_transition,
)
from sfunwind.unwind.trace import Frame, Mode, Reason, Source, Trace

DATA = Path(__file__).parent / "data" / "livepatch"
KO = DATA / "livepatch-sfunwind.ko"

FOO = FuncRange("foo", 0x1000, 0x40)
BAR = FuncRange("bar", 0x2000, 0x80)


def trace(*pcs: int, reliable: bool = True, sources: dict[int, Source] | None = None,
          reasons: list[Reason] | None = None, mode: Mode = Mode.SFRAME) -> Trace:
    sources = sources or {}
    frames = [Frame(pc=pc, source=sources.get(i, Source.TASK if i == 0 else Source.FRAME))
              for i, pc in enumerate(pcs)]
    return Trace(frames=frames, mode=mode, reliable=reliable, reasons=list(reasons or []))


def provider_of(table: dict[int, Trace]):
    def provide(task: TaskInfo, mode: Mode) -> Trace:
        return table[task.pid]
    return provide


SLEEPER = TaskInfo(pid=10, comm="sleeper", task=0xA000, state="S", cpu=0)


# -- one task ------------------------------------------------------------------------------

def test_sleeping_in_patched_function_is_eaddrinuse_and_names_old_name():
    d = decide_task(SLEEPER, [FOO], provider_of({10: trace(0x9000, 0x1010, 0x3000)}),
                    Mode.SFRAME)
    assert d.verdict is Verdict.IN_USE
    assert d.hit is not None and d.hit.index == 1 and d.hit.func is FOO
    assert d.message == "klp_try_switch_task: sleeper:10 is sleeping on function foo"
    assert not d.switches


def test_range_is_half_open_on_raw_return_addresses():
    # start is inside, start+size is not, start-1 is not: no -4 adjustment of return addresses
    inside = decide_task(SLEEPER, [FOO], provider_of({10: trace(0x9000, 0x1000)}), Mode.SFRAME)
    past = decide_task(SLEEPER, [FOO], provider_of({10: trace(0x9000, 0x1040)}), Mode.SFRAME)
    before = decide_task(SLEEPER, [FOO], provider_of({10: trace(0x9000, 0x0FFF)}), Mode.SFRAME)
    last = decide_task(SLEEPER, [FOO], provider_of({10: trace(0x9000, 0x103F)}), Mode.SFRAME)
    assert inside.verdict is Verdict.IN_USE and last.verdict is Verdict.IN_USE
    assert past.verdict is Verdict.SWITCHED and before.verdict is Verdict.SWITCHED


def test_first_matching_func_wins_not_first_frame():
    # klp_check_stack iterates funcs outside, entries inside: BAR is listed first, so even
    # though FOO's frame is innermost, the kernel reports BAR.
    d = decide_task(SLEEPER, [BAR, FOO], provider_of({10: trace(0x1010, 0x2010)}), Mode.SFRAME)
    assert d.hit.func is BAR and d.hit.index == 1
    assert [h.func.old_name for h in d.shadow_hits] == ["foo", "bar"]


def test_unreliable_trace_is_einval_even_when_it_shows_a_patched_function():
    reason = Reason("exception-boundary", "pt_regs", 3, 0x1010)
    d = decide_task(SLEEPER, [FOO], provider_of({10: trace(0x9000, 0x1010, reliable=False,
                                                           reasons=[reason])}), Mode.UPSTREAM)
    assert d.verdict is Verdict.UNRELIABLE
    assert d.message == "klp_try_switch_task: sleeper:10 has an unreliable stack"
    assert d.reasons == [reason] and d.hit is None
    assert [h.func for h in d.shadow_hits] == [FOO]  # shown to people, ignored by the kernel
    assert "exception-boundary" in d.why


def test_unreliable_without_reasons_still_gets_one():
    d = decide_task(SLEEPER, [FOO], provider_of({10: trace(0x9000, reliable=False)}), Mode.FP_ONLY)
    assert d.verdict is Verdict.UNRELIABLE and d.reasons[0].code == "unreliable"


def test_buffer_of_100_entries():
    # stack_trace_consume_entry returns false when it stores entry #100: arm64 turns that
    # into -EINVAL.  99 entries fit.
    ok = decide_task(SLEEPER, [FOO], provider_of({10: trace(*range(0x5000, 0x5000 + 99 * 4, 4))}),
                     Mode.SFRAME)
    full = decide_task(SLEEPER, [FOO],
                       provider_of({10: trace(*range(0x5000, 0x5000 + MAX_STACK_ENTRIES * 4, 4))}),
                       Mode.SFRAME)
    assert ok.verdict is Verdict.SWITCHED and ok.entries == 99
    assert full.verdict is Verdict.UNRELIABLE
    assert [r.code for r in full.reasons] == ["too-many-entries"]
    assert full.reasons[0].index == MAX_STACK_ENTRIES - 1


def test_buffer_limit_reason_not_duplicated_when_unwinder_reported_it():
    r = Reason("too-many-entries", "x", 99)
    t = trace(*range(0x5000, 0x5000 + 120 * 4, 4), reliable=False, reasons=[r])
    d = decide_task(SLEEPER, [FOO], provider_of({10: t}), Mode.SFRAME)
    assert [x.code for x in d.reasons] == ["too-many-entries"]


def test_running_task_is_ebusy_before_any_stack_check():
    calls = []

    def provide(task, mode):
        calls.append(task.pid)
        return trace(0x1004, 0x9000)

    runner = TaskInfo(pid=11, comm="runner", task=0xB000, state="R", cpu=1, running=True)
    d = decide_task(runner, [FOO], provide, Mode.SFRAME)
    assert d.verdict is Verdict.BUSY and d.message.endswith("runner:11 is running")
    assert d.hit is None and [h.func for h in d.shadow_hits] == [FOO]
    assert "running on CPU 1" in d.why and "foo" in d.why


def test_current_task_is_checked_not_busy():
    runner = TaskInfo(pid=11, comm="runner", task=0xB000, state="R", cpu=1, running=True)
    d = decide_task(runner, [FOO], provider_of({11: trace(0x9000, 0x9100)}), Mode.SFRAME,
                    current=True)
    assert d.verdict is Verdict.SWITCHED and d.is_current
    d2 = decide_task(runner, [FOO], provider_of({11: trace(0x1000)}), Mode.SFRAME, current=True)
    assert d2.verdict is Verdict.IN_USE


def test_task_without_stack_is_reliably_empty():
    zombie = TaskInfo(pid=12, comm="z", state="Z", has_stack=False)
    d = decide_task(zombie, [FOO], provider_of({}), Mode.SFRAME)
    assert d.verdict is Verdict.SWITCHED and d.entries == 0 and "reliably empty" in d.why


def test_unreadable_stack_is_unreliable_with_the_fault():
    def provide(task, mode):
        raise MemoryFault(0xFFFF800082A6B910, "page not in the dump")

    d = decide_task(SLEEPER, [FOO], provide, Mode.SFRAME)
    assert d.verdict is Verdict.UNRELIABLE
    assert d.reasons[0].code == "analysis-error" and "0xffff800082a6b910" in d.reasons[0].message


# -- the whole transition ------------------------------------------------------------------

def _world():
    tasks = [
        TaskInfo(pid=0, comm="swapper/0", task=0x100, cpu=0, state="R", idle_cpu=0),
        TaskInfo(pid=1, comm="init", task=0x200, cpu=1, state="S"),
        TaskInfo(pid=2, comm="kthreadd", task=0x300, cpu=0, state="S"),
        TaskInfo(pid=3, comm="busy", task=0x400, cpu=0, state="R", running=True),
        TaskInfo(pid=0, comm="swapper/1", task=0x500, cpu=1, state="R", idle_cpu=1,
                 cpu_online=False),
        TaskInfo(pid=4, comm="irqd", task=0x600, cpu=1, state="R"),
    ]
    boundary = Reason("exception-boundary", "crosses pt_regs", 1, 0x1008)
    upstream = {0: trace(0x9000), 1: trace(0x9000, 0x1010), 2: trace(0x9000, 0x9100),
                3: trace(0x2000), 4: trace(0x9000, 0x1008, reliable=False, reasons=[boundary],
                                           mode=Mode.UPSTREAM)}
    sframe = dict(upstream)
    sframe[4] = trace(0x9000, 0x1008, sources={1: Source.REGS_PC})

    def provide(task, mode):
        return (upstream if mode is Mode.UPSTREAM else sframe)[task.pid]
    return tasks, provide


def test_transition_order_verdicts_and_summary():
    tasks, provide = _world()
    res = try_complete_transition(tasks, [FOO], provide, Mode.UPSTREAM)
    # threads first in list order, idle tasks last in CPU order
    assert [d.task.comm for d in res.decisions] == ["init", "kthreadd", "busy", "irqd",
                                                    "swapper/0", "swapper/1"]
    verdicts = {d.task.comm: d.verdict for d in res.decisions}
    assert verdicts == {"init": Verdict.IN_USE, "kthreadd": Verdict.SWITCHED,
                        "busy": Verdict.BUSY, "irqd": Verdict.UNRELIABLE,
                        "swapper/0": Verdict.SWITCHED, "swapper/1": Verdict.OFFLINE_IDLE}
    assert not res.complete
    assert [d.task.comm for d in res.blockers] == ["init", "busy", "irqd"]
    assert res.blocking_functions() == {"foo": 1}
    assert "STALLS: 3 of 6 tasks" in res.summary()
    text = format_result(res)
    assert "klp_try_switch_task: init:1 is sleeping on function foo" in text
    assert "klp_try_switch_task: irqd:4 has an unreliable stack" in text
    j = res.to_json()
    assert j["complete"] is False and j["counts"]["in-use"] == 1
    assert j["tasks"][0]["hit"]["function"] == "foo"


def test_current_by_pid_and_missing_current_note():
    tasks, provide = _world()
    res = try_complete_transition(tasks, [FOO], provide, Mode.SFRAME, current=3)
    busy = next(d for d in res.decisions if d.task.pid == 3)
    assert busy.is_current and busy.verdict is Verdict.SWITCHED
    res2 = try_complete_transition(tasks, [FOO], provide, Mode.SFRAME, current=999)
    assert res2.notes and "999" in res2.notes[0]


def test_compare_reveals_task_hidden_behind_the_boundary():
    tasks, provide = _world()
    up = try_complete_transition(tasks, [FOO], provide, Mode.UPSTREAM)
    sf = try_complete_transition(tasks, [FOO], provide, Mode.SFRAME)
    cmp = compare(up, sf)
    kinds = {c.task.comm: c.kind for c in cmp.changes}
    assert kinds["irqd"] == "revealed"  # -EINVAL upstream, -EADDRINUSE with SFrame
    assert kinds["init"] == "same"
    other = try_complete_transition(tasks, [BAR], provide, Mode.SFRAME)
    up_bar = try_complete_transition(tasks, [BAR], provide, Mode.UPSTREAM)
    assert {c.task.comm: c.kind for c in compare(up_bar, other).changes}["irqd"] == "unblocked"
    text = format_comparison(cmp)
    assert "revealed" in text and "1 revealed" in cmp.summary()
    assert cmp.to_json()["changes"][0]["comm"] == "irqd"


# -- ranges --------------------------------------------------------------------------------

class FakeSymbols:
    def __init__(self, tables):
        self.tables = tables

    def kallsyms(self, obj):
        return self.tables.get(obj)


VMLINUX = Kallsyms([(0x1000, "foo"), (0x1040, "dup"), (0x1080, "bar"), (0x1100, "dup"),
                    (0x1180, "end_of_text")], end=0x2000)
PATCHMOD = Kallsyms([(0x8000, "livepatch_foo"), (0x8030, "livepatch_dup"),
                     (0x8060, "prev_foo")], end=0x8100, object_name="lp")
SYMS = FakeSymbols({None: VMLINUX, "lp": PATCHMOD, "earlier": PATCHMOD})


def test_patching_uses_the_old_function_with_its_kallsyms_size():
    plan = build_ranges(PatchSpec([FuncSpec("foo"), FuncSpec("dup", sympos=2)]), SYMS)
    assert [(r.old_name, r.start, r.size, r.kind) for r in plan.ranges] == [
        ("foo", 0x1000, 0x40, "old"), ("dup", 0x1100, 0x80, "old")]


def test_sympos_rules_match_klp_find_object_symbol():
    with pytest.raises(UsageError, match="unresolvable ambiguity for symbol 'dup'"):
        build_ranges(PatchSpec([FuncSpec("dup")]), SYMS)
    with pytest.raises(UsageError, match="symbol position 3 for symbol 'dup'"):
        build_ranges(PatchSpec([FuncSpec("dup", sympos=3)]), SYMS)
    with pytest.raises(UsageError, match="symbol 'nope' not found"):
        build_ranges(PatchSpec([FuncSpec("nope")]), SYMS)
    # sympos 1 of a unique name is accepted, like the kernel
    assert build_ranges(PatchSpec([FuncSpec("foo", sympos=1)]), SYMS).ranges[0].start == 0x1000


def test_unpatching_uses_the_new_function_in_the_patch_module():
    spec = PatchSpec([FuncSpec("foo", new_name="livepatch_foo")], module="lp")
    plan = build_ranges(spec, SYMS, direction=UNPATCHING)
    r = plan.ranges[0]
    assert (r.old_name, r.start, r.size, r.kind) == ("foo", 0x8000, 0x30, "new")
    gone = PatchSpec([FuncSpec("foo", new_name="livepatch_foo")], module="notloaded")
    with pytest.raises(UsageError, match="not loaded"):
        build_ranges(gone, SYMS, direction=UNPATCHING)


def test_stacked_patch_uses_previous_new_function():
    spec = PatchSpec([FuncSpec("foo"), FuncSpec("bar")])
    plan = build_ranges(spec, SYMS, stacked={"foo": "earlier:prev_foo", "bar": "0x7000-0x7010"})
    assert [(r.start, r.size, r.kind) for r in plan.ranges] == [(0x8060, 0xA0, "previous"),
                                                                (0x7000, 0x10, "previous")]
    # unpatching ignores the stack: the range is always this patch's function
    un = build_ranges(spec, SYMS, direction=UNPATCHING, stacked={"foo": "earlier:prev_foo"})
    assert un.ranges[0].start == 0x1000
    with pytest.raises(UsageError, match="not one of the patched functions"):
        build_ranges(spec, SYMS, stacked={"baz": "earlier:prev_foo"})


def test_unloaded_module_object_is_skipped_and_raw_ranges_added():
    spec = PatchSpec([FuncSpec("foo"), FuncSpec("x", object="ext4")])
    plan = build_ranges(spec, SYMS, raw_ranges=[(0x1050, 0x1060)])
    assert [r.old_name for r in plan.ranges] == ["foo", "0x1050-0x1060"]
    assert plan.ranges[1].label == "dup+0x10" and plan.ranges[1].kind == "range"
    assert "ext4" in plan.skipped[0]
    with pytest.raises(UsageError, match="no function of the patch is loaded"):
        build_ranges(PatchSpec([FuncSpec("x", object="ext4")]), SYMS)


def test_func_and_range_syntax():
    assert FuncSpec.parse("ext4:ext4_file_read_iter,2") == FuncSpec("ext4_file_read_iter",
                                                                     "ext4", 2)
    assert FuncSpec.parse("vmlinux:do_wait") == FuncSpec("do_wait")
    assert FuncSpec.parse("invoke_syscall.constprop.0").old_name == "invoke_syscall.constprop.0"
    assert parse_range("ffff800080010000-0xffff800080010040") == (0xFFFF800080010000,
                                                                  0xFFFF800080010040)
    for bad in ("", "a b", "x:", ":y"):
        with pytest.raises(UsageError):
            FuncSpec.parse(bad)
    for bad in ("10-10", "20-10", "zz-30", "10"):
        with pytest.raises(UsageError):
            parse_range(bad)


# -- the .ko -------------------------------------------------------------------------------

def test_ko_tables_of_the_real_module():
    m = read_livepatch_module(KO)
    assert m.module == "livepatch_sfunwind" and m.livepatch_tag
    assert [(o.name, [(f.old_name, f.new_func, f.old_sympos) for f in o.funcs])
            for o in m.objects] == [
        (None, [("chacha_block_generic", "livepatch_chacha_block_generic", 0),
                ("do_wait", "livepatch_do_wait", 0),
                ("load_elf_binary", "livepatch_load_elf_binary", 1)]),
        ("ext4", [("ext4_file_read_iter", "livepatch_ext4_file_read_iter", 0)])]
    spec = m.spec()
    assert [str(f) for f in spec.funcs] == ["chacha_block_generic", "do_wait",
                                           "load_elf_binary,1", "ext4:ext4_file_read_iter"]


def test_ko_klp_build_tables():
    m = read_livepatch_module(DATA / "livepatch-sfunwind-ext.ko")
    assert (m.layout, m.module) == ("klp_object_ext", "livepatch_sfunwind_ext")
    assert [(o.name, [(f.old_name, f.new_func, f.old_sympos) for f in o.funcs])
            for o in m.objects] == [
        (None, [("do_wait", "livepatch_do_wait", 0),
                ("load_elf_binary", "livepatch_load_elf_binary", 2)])]
    text = (DATA / "livepatch-sfunwind.pahole.txt").read_text()
    sizes = dict(re.findall(r"struct (klp_\w+) \{.*?/\* size: (\d+),", text, re.S))
    assert (m.func_size, m.object_size) == (int(sizes["klp_func_ext"]),
                                            int(sizes["klp_object_ext"]))
    assert m.to_json()["layout"] == "klp_object_ext"


def test_ko_inferred_struct_sizes_match_pahole():
    # pahole read the unstripped module's DWARF; the parser infers from relocations alone
    text = (DATA / "livepatch-sfunwind.pahole.txt").read_text()
    sizes = dict(re.findall(r"struct (klp_\w+) \{.*?/\* size: (\d+),", text, re.S))
    m = read_livepatch_module(KO)
    assert (m.func_size, m.object_size) == (int(sizes["klp_func"]), int(sizes["klp_object"]))
    assert (m.func_size, m.object_size) == (152, 168)


def test_ko_bad_inputs_are_typed_errors(tmp_path):
    with pytest.raises(ElfFormatError, match="EI_CLASS"):
        p = tmp_path / "junk.ko"
        p.write_bytes(b"\x7fELF" + b"\0" * 10)
        read_livepatch_module(p)
    trunc = tmp_path / "trunc.ko"
    trunc.write_bytes(KO.read_bytes()[:4096])
    with pytest.raises(ElfFormatError):
        read_livepatch_module(trunc)
    with pytest.raises(ElfFormatError, match="cannot open"):
        read_livepatch_module(tmp_path / "missing.ko")


def test_ko_without_klp_patch_is_rejected(tmp_path):
    # a module's __this_module reference followed by a function pointer is not a klp_patch:
    # drop the relocation of `.objs` by renaming the target symbol's section flags is hard;
    # use an ordinary object file instead (no __this_module at all).
    obj = shutil.which("true")
    assert obj
    with pytest.raises(ElfFormatError, match="not a kernel module"):
        read_livepatch_module(obj)


def test_ko_corrupted_bytes_never_escape_as_other_errors(tmp_path):
    import random

    data = KO.read_bytes()
    rng = random.Random(7)
    parsed = rejected = 0
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            pos = (rng.randrange(len(b)) if r < 0.4 else rng.randrange(0x40) if r < 0.6
                   else rng.randrange(len(b) - 0x2000, len(b)))  # headers, symtab, relocs
            b[pos] = rng.randrange(256)
        p = tmp_path / "fuzz.ko"
        p.write_bytes(bytes(b))
        try:
            read_livepatch_module(p)
            parsed += 1
        except ElfFormatError:
            rejected += 1
    assert parsed + rejected == 300 and rejected > 50


# -- module kallsyms from a dump (synthetic memory laid out like struct module) --------------

def test_module_kallsyms_from_struct_module():
    import struct as st

    from sfunwind.livepatch.dump import DumpInputs
    from sfunwind.memory.base import SparseMemory

    head, mod, ks, symtab, strtab, text = (0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x9000)
    offsets = {("struct module", "list"): 8, ("struct module", "name"): 24,
               ("struct module", "kallsyms"): 904, ("struct module", "mem"): 320,
               ("struct mod_kallsyms", "symtab"): 0, ("struct mod_kallsyms", "num_symtab"): 8,
               ("struct mod_kallsyms", "strtab"): 16}
    names = b"\0$x\0foo\0undef\0dup\0bar\0"
    off = {n: names.index(n.encode() + b"\0") for n in ("$x", "foo", "undef", "dup", "bar")}
    syms = [(0, 0, 0), (off["$x"], 1, text), (off["foo"], 1, text), (off["undef"], 0, 0),
            (off["dup"], 1, text + 0x40), (off["bar"], 1, text + 0x20),
            (off["dup"], 1, text + 0x10), (0, 1, text + 0x30),  # unnamed
            (off["bar"] + 1, 2, text + 0x1000)]  # "ar": a data symbol above MOD_TEXT
    table = b"".join(st.pack("<IBBHQQ", n, 0x12, 0, shndx, value, 0) for n, shndx, value in syms)
    module = bytearray(1024)
    st.pack_into("<QQ", module, 8, head, head)
    module[24:24 + 6] = b"demo\0\0"
    st.pack_into("<Q", module, 904, ks)
    st.pack_into("<QI", module, 320, text, 0x80)
    memory = SparseMemory([(head, st.pack("<QQ", mod + 8, mod + 8)), (mod, bytes(module)),
                           (ks, st.pack("<QQQ", symtab, len(syms), strtab)),
                           (symtab, table), (strtab, names.ljust(4096, b"\0"))])  # a page

    class Types:
        def offsetof(self, type_name, member):
            return offsets[(type_name, member)]

    class Symbols:
        def get(self, name):
            return {"modules": head}.get(name)

    class Program:
        types, symbols = Types(), Symbols()

        def read_u64(self, address):
            return memory.read_u64(address)

    Program.memory = memory
    inputs = DumpInputs(Program())
    assert inputs.modules() == {"demo": mod}
    assert inputs.kallsyms("absent") is None
    k = inputs.kallsyms("demo")
    assert k.find("foo").size == 0x10  # up to dup at +0x10 ($x and unnamed symbols ignored)
    # sympos counts in symbol-table order for modules: the first "dup" is the one at +0x40
    assert (k.find("dup", 1).address, k.find("dup", 1).size) == (text + 0x40, 0x40)  # to end
    assert k.find("ar").address == text + 0x1000  # the data symbol is there, and did not
    # stretch "dup" (the last function of MOD_TEXT) past the end of the module's text
    assert (k.find("dup", 2).address, k.find("dup", 2).size) == (text + 0x10, 0x10)
    assert k.find("bar").size == 0x20  # the unnamed symbol at +0x30 does not end it
    with pytest.raises(UsageError, match="not found"):
        k.find("undef")
    plan = build_ranges(PatchSpec([FuncSpec.parse("demo:dup,2")]), inputs)
    assert (plan.ranges[0].start, plan.ranges[0].object) == (text + 0x10, "demo")
