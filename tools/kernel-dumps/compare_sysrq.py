#!/usr/bin/env python3
"""compare_sysrq.py SYSRQ_T.txt DRGN.json [-v]

Compare the kernel's own unwinder (sysrq-t console output) with drgn's
reference traces, for tasks that are asleep in both (state S, D or I, not
running).  The console output was taken at a different instant from the vmcore,
so a task that woke up in between legitimately differs; the numbers are a
sanity check, not a test.  Frames are compared as function+offset (kallsyms
and ELF symbol sizes differ, so the "/size" part is ignored); drgn's inline
frames are dropped.
"""
import json
import pathlib
import re
import sys

TASK = re.compile(r"\]\s+task:(.{15}\S*)\s+state:(\S)\s.*\bpid:(\d+)")
FRAME = re.compile(r"\]\s+(\S+?)\+(0x[0-9a-f]+)/0x[0-9a-f]+")


def parse_sysrq(path):
    tasks = {}
    cur = None
    for ln in pathlib.Path(path).read_text(errors="replace").splitlines():
        m = TASK.search(ln)
        if m:
            cur = {"comm": m.group(1).strip(), "state": m.group(2), "frames": []}
            tasks[int(m.group(3))] = cur
            continue
        m = FRAME.search(ln)
        if m and cur is not None:
            cur["frames"].append(f"{m.group(1)}+{int(m.group(2), 16):#x}")
    return tasks


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    sysrq = parse_sysrq(argv[1])
    ref = json.loads(pathlib.Path(argv[2]).read_text())
    same, diff = [], []
    for t in ref["tasks"]:
        k = sysrq.get(t["pid"])
        if (k is None or t["running"] or t["state"] not in "SDI" or k["state"] not in "SDI"
                or "frames" not in t or t["pid"] == 0):
            continue
        d = [f"{f['symbol']}+{f['offset']:#x}" for f in t["frames"] if not f["is_inline"]]
        (same if d == k["frames"] else diff).append((t["pid"], t["comm"], d, k["frames"]))
    print(f"{argv[2]}: {len(same) + len(diff)} sleeping tasks compared, {len(same)} identical, "
          f"{len(diff)} differ")
    if "-v" in argv:
        for pid, comm, d, k in diff:
            i = next((i for i, (x, y) in enumerate(zip(d, k, strict=False)) if x != y), min(len(d), len(k)))
            print(f"  pid {pid} {comm}: first difference at frame {i}: "
                  f"drgn {d[i] if i < len(d) else '-'} / kernel {k[i] if i < len(k) else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
