"""``sfunwind kernel trace``: text, JSON, exit codes, snapshots."""

from __future__ import annotations

import json
from pathlib import Path

from sfunwind.cli.main import main

DATA = Path(__file__).parent / "data"
FIX = DATA / "linux-7.2.13-cloud-arm64"
VMCORE = str(FIX / "nokaslr" / "nested-irq.vmcore.xz")
VMLINUX = str(FIX / "vmlinux.debug.xz")


def test_text_output_both_modes(capsys):
    assert main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--cpu", "1", "--mode",
                 "upstream"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("pid 309 (exe) CPU 1")
    assert lines[2].split()[:2] == ["hrtimer_interrupt+0x0/0x340", "(P)"]
    assert out.count("---- exception boundary: pt_regs at") == 3
    assert "---- stack switch: irq -> task ----" in out
    assert "verdict: UNRELIABLE (1 reason)" in out
    assert "  exception-boundary: " in out
    assert main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--cpu", "1"]) == 0
    out = capsys.readouterr().out
    assert " arch_timer_handler_virt+0x3c/0x60 (L)" in out
    assert " try_to_wake_up+0x94/0xaf8 (L)" in out
    assert "  sframe-no-row: " in out and "exception-boundary" not in out


def test_json_and_require_reliable(capsys):
    rc = main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--pid", "2", "--pid", "309",
               "--json", "--require-reliable"])
    traces = json.loads(capsys.readouterr().out)
    assert rc == 1  # pid 309 is unreliable
    assert [t["pid"] for t in traces] == [2, 309]
    kthreadd, exe = traces
    assert kthreadd["reliable"] and kthreadd["reasons"] == [] and kthreadd["start"] == "task"
    assert kthreadd["frames"][0]["marker"] == "T"
    assert kthreadd["frames"][0]["symbol"] == "__switch_to"
    assert {"pc", "symbol", "offset", "size", "marker", "stack"} <= set(exe["frames"][0])
    assert not exe["reliable"] and exe["reasons"][0]["code"] == "sframe-no-row"
    assert exe["cpu"] == 1 and exe["start"] == "cpu" and exe["mode"] == "sframe"
    assert main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--pid", "2",
                 "--require-reliable"]) == 0


def test_all_and_errors(capsys):
    assert main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--all", "--mode", "fp"]) == 0
    out = capsys.readouterr().out
    assert "72 traces: " in out and "(mode fp)" in out
    assert main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--pid", "99999"]) == 2
    assert "no task with pid 99999" in capsys.readouterr().err
    assert main(["kernel", "trace", VMCORE]) == 2
    assert main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--cpu", "7"]) == 2


def test_snapshot(capsys):
    snap = DATA / "truth" / "snapshot-inflate_fast.json.xz"
    assert main(["kernel", "trace", "--snapshot", str(snap), "--json"]) == 0
    (trace,) = json.loads(capsys.readouterr().out)
    assert trace["start"] == "snapshot" and trace["reliable"]
    assert any(f["marker"] == "P" for f in trace["frames"])


def test_table(capsys):
    rsites = str(DATA / "unwind" / "linux-7.2.13-cloud-arm64.rsites")
    assert main(["kernel", "trace", VMCORE, "-s", VMLINUX, "--table", "--return-sites",
                 rsites]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["task", "upstream", "sframe", "reasons"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows["309"][2:4] == ["no", "no"] and "sframe-no-row" in lines[-2] + "".join(
        " ".join(r) for r in rows.values())
    assert rows["113"][2:4] == ["no", "yes"]  # a boundary SFrame crosses reliably
    assert rows["2"][2:4] == ["yes", "yes"]
    assert lines[-1].split()[:2] == ["total", "72"]


def test_command_groups_belong_to_their_parser():
    """Each parser has its own group tables (a registry keyed by id() once handed a new
    parser the groups of a collected one at the same address: "conflicting subparser")."""
    import argparse
    import gc

    from sfunwind.cli.main import build_parser, command_group

    a = argparse.ArgumentParser().add_subparsers()
    b = argparse.ArgumentParser().add_subparsers()
    ga = command_group(a, "g", "help")
    assert command_group(a, "g", "help") is ga
    assert command_group(b, "g", "help") is not ga
    for _ in range(50):  # fresh parsers, old ones collected: always complete and usable
        parser = build_parser()
        assert parser.parse_args(["sframe", "dump", "x"]).func is not None
        del parser
        gc.collect()
