#!/usr/bin/env python3
"""inspect_vmcore.py VMCORE [--vmcoreinfo]

Print the layout of an arm64 ELF vmcore (QEMU dump-guest-memory, or a trimmed
one): program headers, notes, the NT_PRSTATUS registers of each vCPU, the
address-translation parameters from VMCOREINFO and, with --vmcoreinfo, the
whole VMCOREINFO text.  Standard library only.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmcore_lib import Core, KernelMemory

NT = {1: "NT_PRSTATUS", 2: "NT_FPREGSET", 0x405: "NT_ARM_SVE", 0x406: "NT_ARM_PAC_MASK"}


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    c = Core(argv[1])
    loads = [p for p in c.phdrs if p[0] == 1]
    total = sum(p[5] for p in loads)
    print(f"e_type={c.e_type} e_machine={c.e_machine} phdrs={len(c.phdrs)} "
          f"PT_LOAD={len(loads)} ({total} bytes of memory, {total // 4096} pages)")
    shown = c.phdrs if len(c.phdrs) <= 10 else [*c.phdrs[:8], None, *c.phdrs[-1:]]
    for p in shown:
        if p is None:
            print("  ...")
            continue
        print(f"  type={p[0]} flags={p[1]} off={p[2]:#x} vaddr={p[3]:#x} paddr={p[4]:#x} "
              f"filesz={p[5]:#x} memsz={p[6]:#x}")
    for name, ntype, desc in c.notes:
        label = "VMCOREINFO" if name == "VMCOREINFO" else NT.get(ntype, "?")
        print(f"note {name!r} type={ntype:#x} ({label}) {len(desc)} bytes")
    for i, r in enumerate(c.prstatus):
        ps = r["pstate"]
        print(f"vCPU {i} (pr_pid {r['pr_pid']}): pc={r['pc']:#x} sp={r['sp']:#x} x29={r['x29']:#x} "
              f"x30={r['x30']:#x} pstate={ps:#x} EL{(ps >> 2) & 3}{'h' if ps & 1 else 't'} "
              f"DAIF={(ps >> 6) & 0xF:#x}")
    if c.vmcoreinfo:
        km = KernelMemory(c)
        print(f"VMCOREINFO: {c.vmcoreinfo.get('OSRELEASE')} build-id {c.vmcoreinfo.get('BUILD-ID')}")
        print(f"  VA_BITS {km.va_bits} ({km.levels}-level tables{', LPA2' if km.lpa2 else ''}), "
              f"swapper_pg_dir pa {km.pgd_pa:#x}, kimage_voffset {km.kimage_voffset:#x}, "
              f"KASLR offset {km.kaslr_offset:#x}, PAC mask {km.pac_mask:#x}")
        if "--vmcoreinfo" in argv:
            for k, v in c.vmcoreinfo.items():
                print(f"  {k}={v}")
    else:
        print("no VMCOREINFO note (QEMU needs -device vmcoreinfo and the guest qemu_fw_cfg module)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
