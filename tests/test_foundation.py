"""The shared foundations: error hierarchy, CLI error handling, row model, sparse memory."""

from __future__ import annotations

import pytest

from sfunwind.cli.main import main
from sfunwind.errors import ExitCode, MemoryFault, SFrameFormatError, SfunwindError
from sfunwind.memory import SparseMemory
from sfunwind.rules import RETAIN, CfaKind, CfaRule, Rule, RuleKind, UnwindRow, outermost_row


def test_format_error_names_file_and_offset():
    err = SFrameFormatError("bad magic 0x1234", offset=0x10, path="a.out")
    assert str(err) == "SFrame: a.out, offset 0x10: bad magic 0x1234"
    assert isinstance(err, SfunwindError)
    assert err.exit_code == ExitCode.BAD_INPUT
    assert err.with_path("b").path == "a.out"
    assert SFrameFormatError("x", offset=1).with_path("b").path == "b"


def test_memory_fault_message():
    err = MemoryFault(0xFFFF800080000000, "no PTE", physical=0x4000, size=8)
    assert "0xffff800080000000" in str(err) and "phys 0x4000" in str(err)
    assert err.exit_code == ExitCode.MEMORY_FAULT


def test_sparse_memory_reads_across_chunks_and_faults_on_holes():
    mem = SparseMemory([(0x1000, b"\x01" * 8), (0x1008, b"\x02" * 8), (0x2000, b"\x03" * 4)])
    assert mem.read_u64(0x1004) == int.from_bytes(b"\x01" * 4 + b"\x02" * 4, "little")
    with pytest.raises(MemoryFault) as ei:
        mem.read(0x100C, 8)
    assert ei.value.address == 0x1010
    with pytest.raises(MemoryFault):
        mem.read(0xFFF, 2)
    assert not mem.is_mapped(0x2002, 4)
    assert mem.is_mapped(0x2000, 4)


def test_row_model_equality_ignores_range():
    a = UnwindRow(CfaRule(CfaKind.SP_OFFSET, 16), Rule(RuleKind.CFA_OFFSET_DEREF, -8),
                  Rule(RuleKind.CFA_OFFSET_DEREF, -16), ra_signed=True, start=0, end=4)
    b = UnwindRow(CfaRule(CfaKind.SP_OFFSET, 16), Rule(RuleKind.CFA_OFFSET_DEREF, -8),
                  Rule(RuleKind.CFA_OFFSET_DEREF, -16), ra_signed=True, start=4, end=8)
    c = UnwindRow(CfaRule(CfaKind.SP_OFFSET, 16), RETAIN, RETAIN)
    assert a.same_rules(b) and not a.same_rules(c)
    assert a.describe() == "cfa=sp+16 fp=c-16 ra=c-8[s:A]"
    assert outermost_row().describe() == "RA undefined"


def test_cli_without_command_is_a_usage_error(capsys):
    assert main([]) == ExitCode.USAGE
    assert "sfunwind" in capsys.readouterr().err


def test_cli_help_teaches(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "examples:" in out
