"""livepatch on the real 7.2.13 arm64 vmcores: each klp_try_switch_task outcome, from real
traces, with patch sets chosen from the dumps (see tests/data/livepatch/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfunwind.cli.main import main
from sfunwind.errors import ExitCode
from sfunwind.livepatch.dump import DumpInputs
from sfunwind.livepatch.kallsyms import Kallsyms
from sfunwind.livepatch.ko import read_livepatch_module
from sfunwind.livepatch.patch import FuncSpec, PatchSpec, build_ranges
from sfunwind.livepatch.transition import Verdict, compare, try_complete_transition
from sfunwind.unwind.trace import Mode, Source

DATA = Path(__file__).parent / "data"
FIX = DATA / "linux-7.2.13-cloud-arm64"
VMLINUX = FIX / "vmlinux.debug.xz"
PLUS8 = FIX / "nokaslr" / "hrtimer-plus8.vmcore.xz"
KASLR = FIX / "kaslr" / "irq-in-fault.vmcore.xz"
KO = DATA / "livepatch" / "livepatch-sfunwind.ko"


@pytest.fixture(scope="module")
def plus8() -> DumpInputs:
    return DumpInputs.open(PLUS8, VMLINUX)


def run(inputs: DumpInputs, funcs: list[str], mode: Mode, **kw):
    plan = build_ranges(PatchSpec([FuncSpec.parse(f) for f in funcs]), inputs)
    tasks = inputs.tasks()
    return try_complete_transition(tasks, plan.ranges, inputs.trace, mode, **kw)


def by_pid(result):
    return {d.task.pid: d for d in result.decisions if d.task.idle_cpu is None}


def test_tasks_of_the_dump(plus8):
    tasks = plus8.tasks()
    assert len(tasks) == 72
    running = sorted(t.pid for t in tasks if t.running)
    assert running == [116, 309]  # rq->curr of CPU 0 and CPU 1
    idle = sorted((t.idle_cpu, t.comm) for t in tasks if t.idle_cpu is not None)
    assert idle == [(0, "swapper/0"), (1, "swapper/1")]
    assert all(t.has_stack for t in tasks)
    # both possible CPUs are online: no idle task is switched without a check
    assert plus8.possible_cpus() == [0, 1] and all(t.cpu_online for t in tasks)


def test_vmlinux_kallsyms_sizes_are_the_kernels(plus8):
    # the sizes printed by the kernel itself (%pSb in sysrq-t) for every function it printed
    import re

    k = plus8.kallsyms(None)
    text = (FIX / "nokaslr" / "sysrq-t.txt").read_text()
    seen = {}
    for name, size in re.findall(r"\]  (\S+)\+0x[0-9a-f]+/0x([0-9a-f]+)", text):
        seen[name] = int(size, 16)
    assert len(seen) > 80
    for name, size in seen.items():
        assert size in [k.find(name, i + 1).size for i in range(len(k.positions(name)))], name
    # the same table rebuilt from the ELF .symtab alone
    from sfunwind.memory.files import materialize

    own = Kallsyms.from_elf(materialize(VMLINUX))
    for name in ("__switch_to", "do_wait", "chacha_block_generic", "hrtimer_interrupt"):
        assert own.find(name) == k.find(name)


def test_sleeping_task_in_a_patched_function_both_modes(plus8):
    for mode in (Mode.UPSTREAM, Mode.SFRAME):
        res = run(plus8, ["do_wait"], mode)
        d = by_pid(res)
        assert d[1].verdict is Verdict.IN_USE, mode  # init waits for its children
        assert d[1].message == "klp_try_switch_task: init:1 is sleeping on function do_wait"
        assert d[1].hit.index == 3 and d[1].hit.frame.format() == "do_wait+0x68/0x1c0"
        in_use = sorted(p for p, x in d.items() if x.verdict is Verdict.IN_USE)
        assert in_use == [1, 118]  # init and the sh that waits for its pipeline
        assert not res.complete


def test_function_only_a_running_cpu_is_in(plus8):
    res = run(plus8, ["hrtimer_interrupt"], Mode.UPSTREAM)
    d = by_pid(res)
    # nobody sleeps in it; both CPUs are in it (stopped at hrtimer_interrupt+8), and a
    # running task is -EBUSY before its stack is looked at
    assert not [p for p, x in d.items() if x.verdict is Verdict.IN_USE]
    for pid, cpu in ((116, 0), (309, 1)):
        assert d[pid].verdict is Verdict.BUSY and d[pid].task.cpu == cpu
        assert d[pid].message == f"klp_try_switch_task: {d[pid].task.comm}:{pid} is running"
        hit = d[pid].shadow_hits[0]
        assert hit.func.old_name == "hrtimer_interrupt" and hit.index == 0
        assert hit.frame.source is Source.REGS_PC and hit.frame.offset == 8
    assert res.counts()["running"] == 2


def test_current_task_is_checked_from_its_registers(plus8):
    res = run(plus8, ["hrtimer_interrupt"], Mode.UPSTREAM, current=116)
    d = by_pid(res)[116]
    assert d.is_current and d.verdict is Verdict.UNRELIABLE  # (P) start: upstream gives up
    assert d.reasons[0].code == "exception-boundary" and d.reasons[0].index == 0
    assert by_pid(res)[309].verdict is Verdict.BUSY


def test_lr_only_caller_is_invisible_upstream(plus8):
    # pid 113 is preempted in the leaf chacha_permute+0x38: its caller chacha_block_generic
    # is only in LR.  The upstream walk (frame records) never reports it at all.
    res = run(plus8, ["chacha_block_generic"], Mode.UPSTREAM)
    d = by_pid(res)[113]
    assert d.verdict is Verdict.UNRELIABLE and d.reasons[0].code == "exception-boundary"
    assert d.shadow_hits == []
    assert "chacha_block_generic" not in [f.symbol for f in d.trace.frames]
    assert [f.symbol for f in d.trace.frames][8:10] == ["chacha_permute",
                                                       "get_random_bytes_user"]


def test_lr_only_caller_blocks_with_sframe(plus8):
    res = run(plus8, ["chacha_block_generic"], Mode.SFRAME)
    d = by_pid(res)[113]
    assert d.verdict is Verdict.IN_USE, d.why
    assert d.hit.frame.source is Source.REGS_LR  # found through the (L) frame
    assert d.hit.frame.format() == "chacha_block_generic+0x68/0x160 (L)"
    up = run(plus8, ["chacha_block_generic"], Mode.UPSTREAM)
    change = next(c for c in compare(up, res).changes if c.task.pid == 113)
    assert change.kind == "revealed"


def test_sframe_unblocks_tasks_interrupted_in_annotated_code(plus8):
    up = run(plus8, ["do_wait"], Mode.UPSTREAM)
    sf = run(plus8, ["do_wait"], Mode.SFRAME)
    kinds = {c.task.pid: c.kind for c in compare(up, sf).changes}
    assert kinds[115] == "unblocked"  # preempted in _copy_to_iter (C, has CFI)
    assert len(sf.blockers) < len(up.blockers)


def test_kaslr_dump_ranges_are_relocated():
    inputs = DumpInputs.open(KASLR, VMLINUX)
    assert inputs.program.kaslr_offset == 0x262AF8800000
    plan = build_ranges(PatchSpec([FuncSpec("do_wait")]), inputs)
    assert plan.ranges[0].start == 0xFFFF8000800EF488 + 0x262AF8800000
    assert plan.ranges[0].size == 0x1C0
    res = try_complete_transition(inputs.tasks(), plan.ranges, inputs.trace, Mode.UPSTREAM)
    assert by_pid(res)[1].verdict is Verdict.IN_USE


def test_unloaded_and_unreadable_modules(plus8):
    assert set(plus8.modules()) == {"qemu_fw_cfg"}
    assert plus8.kallsyms("ext4") is None
    m = read_livepatch_module(KO)
    plan = build_ranges(m.spec(), plus8)
    assert [r.old_name for r in plan.ranges] == ["chacha_block_generic", "do_wait",
                                                 "load_elf_binary"]
    assert plan.ranges[2].start == 0xFFFF800080634290 and plan.ranges[2].size == 0x1978
    assert "ext4" in plan.skipped[0]


# -- the command ---------------------------------------------------------------------------

def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["livepatch", str(PLUS8), "-s", str(VMLINUX), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_ko_compare_json(capsys):
    rc, out, _ = cli(capsys, "--ko", str(KO), "--compare", "--json")
    assert rc == ExitCode.FINDINGS
    doc = json.loads(out)
    assert doc["patch"]["module"] == "livepatch_sfunwind" and doc["complete"] is False
    assert doc["direction"] == "patching" and "ext4" in doc["skipped"][0]
    up = doc["results"]["upstream"]
    assert up["counts"] == {"switch": 64, "running": 2, "unreliable": 4, "in-use": 2}
    assert up["blocking_functions"] == {"do_wait": 2}
    assert {b["pid"] for b in up["blockers"]} == {1, 113, 114, 115, 116, 118, 309, 310}
    assert "comparison" in doc and doc["comparison"]["before"] == "upstream"


def test_cli_text_and_exit_codes(capsys):
    rc, out, _ = cli(capsys, "--func", "do_wait", "--mode", "upstream")
    assert rc == ExitCode.FINDINGS
    assert "klp_try_switch_task: init:1 is sleeping on function do_wait" in out
    assert "STALLS" in out
    # a function nobody is in, with a range that no stack reaches: still stalls, because of
    # the running and the unreliable tasks
    rc, out, _ = cli(capsys, "--range", "ffff800080010000-ffff800080010004", "--mode", "upstream")
    assert rc == ExitCode.FINDINGS and "0 in-use" not in out
    rc, _, err = cli(capsys, "--func", "load_elf_binary")
    assert rc == ExitCode.USAGE and "unresolvable ambiguity" in err
    rc, _, err = cli(capsys)
    assert rc == ExitCode.USAGE and "--func, --range or --ko" in err
    rc, _, err = cli(capsys, "--ko", str(KO), "--unpatch")
    assert rc == ExitCode.USAGE and "livepatch_sfunwind is not loaded" in err
    rc, _, err = cli(capsys, "--func", "qemu_fw_cfg:fw_cfg_sysfs_probe")
    assert rc == ExitCode.USAGE and "not in the dump" in err


def test_cli_range_boundaries(capsys):
    # init's entry is do_wait+0x68 exactly: a 4-byte range starting there catches it, one
    # starting 4 bytes later does not (raw return addresses, END exclusive)
    at = 0xFFFF8000800EF488 + 0x68
    rc, out, _ = cli(capsys, "--range", f"{at:x}-{at + 4:x}", "--mode", "upstream", "--json")
    d = {t["task"]["pid"]: t for t in json.loads(out)["results"]["upstream"]["tasks"]}
    assert d[1]["verdict"] == "in-use" and d[1]["hit"]["pc"] == at
    assert rc == ExitCode.FINDINGS
    rc, out, _ = cli(capsys, "--range", f"{at + 4:x}-{at + 8:x}", "--mode", "upstream", "--json")
    d = {t["task"]["pid"]: t for t in json.loads(out)["results"]["upstream"]["tasks"]}
    assert d[1]["verdict"] == "switch"
    assert rc == ExitCode.FINDINGS  # still: two tasks run, four are unreliable upstream


def test_cli_klp_build_module(capsys):
    ext = DATA / "livepatch" / "livepatch-sfunwind-ext.ko"
    rc, out, _ = cli(capsys, "--ko", str(ext), "--mode", "upstream", "--json")
    doc = json.loads(out)
    assert rc == ExitCode.FINDINGS and doc["patch"]["layout"] == "klp_object_ext"
    starts = [(r["old_name"], r["start"]) for r in doc["ranges"]]
    # old_sympos 2: the second load_elf_binary by address (compat_binfmt_elf's)
    assert starts == [("do_wait", 0xFFFF8000800EF488), ("load_elf_binary", 0xFFFF800080637430)]
    assert doc["results"]["upstream"]["blocking_functions"] == {"do_wait": 2}


def test_cli_stacked_and_unpatch_ranges(capsys):
    # do_wait already replaced by an earlier patch whose new function is (say) kernel_wait4:
    # patching searches that function instead of do_wait
    rc, out, _ = cli(capsys, "--func", "do_wait", "--stacked", "do_wait=kernel_wait4",
                     "--mode", "upstream", "--json")
    doc = json.loads(out)
    r = doc["ranges"][0]
    assert (r["old_name"], r["kind"], r["label"]) == ("do_wait", "previous",
                                                      "kernel_wait4 [vmlinux] (previous patch)")
    tasks = {t["task"]["pid"]: t for t in doc["results"]["upstream"]["tasks"]}
    assert tasks[1]["verdict"] == "in-use" and tasks[1]["hit"]["frame"].startswith("kernel_wait4+")
    assert "is sleeping on function do_wait" in tasks[1]["message"]  # func->old_name
    # unpatching a function given by name searches that function itself
    rc, out, _ = cli(capsys, "--func", "do_wait", "--unpatch", "--mode", "upstream", "--json")
    doc = json.loads(out)
    assert doc["direction"] == "unpatching" and doc["ranges"][0]["kind"] == "new"
    assert rc == ExitCode.FINDINGS and doc["results"]["upstream"]["blocking_functions"] == {
        "do_wait": 2}


DUMPS = ["nokaslr/irq-in-fault", "nokaslr/el1-abort", "nokaslr/softirq-irqstack",
         "nokaslr/nested-irq", "nokaslr/hrtimer-plus8", "nokaslr/hrtimer-plus12",
         "kaslr/irq-in-fault", "kaslr/el1-abort"]


@pytest.mark.parametrize("name", DUMPS)
def test_in_use_agrees_with_drgn_on_every_dump(name):
    """An independent oracle: for every task livepatch would walk (not running, reliable
    upstream trace), "sleeping on F" for each function F drgn saw on that task's stack, and
    for no other function.  Patching every such F at once: the first func in klp order is
    reported, so check all hits (shadow_hits) against drgn's set."""
    import lzma

    with lzma.open(FIX / f"{name}.drgn.json.xz") as f:
        ref = json.load(f)
    drgn = {int(t["task"], 16): {f["symbol"] for f in t.get("frames") or []
                                 if not f["is_inline"] and f["symbol"]}
            for t in ref["tasks"] if not t["running"]}
    inputs = DumpInputs.open(FIX / f"{name}.vmcore.xz", VMLINUX)
    names = sorted(set().union(*drgn.values()))
    syms = inputs.kallsyms(None)
    specs = []
    for n in names:
        for pos in range(1, len(syms.positions(n)) + 1):
            specs.append(FuncSpec(n, sympos=pos))
    plan = build_ranges(PatchSpec(specs), inputs)
    res = try_complete_transition(inputs.tasks(), plan.ranges, inputs.trace, Mode.UPSTREAM)
    checked = 0
    for d in res.decisions:
        if d.task.running or d.verdict is Verdict.UNRELIABLE or d.task.task not in drgn:
            continue
        assert d.verdict is Verdict.IN_USE  # every stack holds at least __switch_to
        ours = {h.func.old_name for h in d.shadow_hits}
        assert ours == drgn[d.task.task], (d.task.name, ours ^ drgn[d.task.task])
        checked += 1
    assert checked >= 60


@pytest.mark.parametrize("dump", ["hrtimer-plus8", "hrtimer-plus12"])
def test_lr_only_caller_of_the_stopped_cpus(dump):
    # Both CPUs stopped in hrtimer_interrupt's prologue (+8: before paciasp, +12: x30 signed,
    # not stored): the caller arch_timer_handler_virt is only in LR.  Only the SFrame step
    # reports it, as (L) with the PAC stripped; frame records never show it.
    inputs = DumpInputs.open(FIX / "nokaslr" / f"{dump}.vmcore.xz", VMLINUX)
    up = by_pid(run(inputs, ["arch_timer_handler_virt"], Mode.UPSTREAM, current=116))
    sf = by_pid(run(inputs, ["arch_timer_handler_virt"], Mode.SFRAME, current=116))
    for pid in (116, 309):
        assert up[pid].shadow_hits == []
        assert "arch_timer_handler_virt" not in [f.symbol for f in up[pid].trace.frames]
        hit = sf[pid].shadow_hits[0]
        assert (hit.index, hit.frame.source) == (1, Source.REGS_LR)
        assert hit.frame.format() == "arch_timer_handler_virt+0x3c/0x60 (L)"
        signed = hit.frame.raw_pc is not None and hit.frame.raw_pc != hit.frame.pc
        assert signed == (dump == "hrtimer-plus12")  # paciasp ran at +8
    # the task running the transition (current): checked, but its walk later meets
    # __arch_clear_user (no CFI), so it stays -EINVAL; the report still shows the (L) hit
    assert up[116].verdict is Verdict.UNRELIABLE and up[116].reasons[0].index == 0
    assert sf[116].verdict is Verdict.UNRELIABLE
    assert sf[116].reasons[0].code == "sframe-no-row"
    assert "arch_timer_handler_virt" in sf[116].why
    assert sf[309].verdict is Verdict.BUSY
