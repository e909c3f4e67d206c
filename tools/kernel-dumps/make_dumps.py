#!/usr/bin/env python3
"""make_dumps.py -- boot a Debian arm64 kernel under QEMU (TCG), stop the whole
VM with gdb breakpoints in chosen kernel contexts, write an ELF vmcore at each
stop, then turn every vmcore into a small test fixture with drgn's stack traces
as the expected output.

usage: make_dumps.py --work WORK_DIR --out OUT_DIR [options]

  --work DIR        directory made by prepare.sh (vmlinuz, vmlinux, initramfs.cpio.gz)
  --out DIR         output directory (created; must be empty)
  --mem 256M --smp 2 --cpu max,pauth-impdef=on
  --kaslr           boot with KASLR (default: nokaslr)
  --append STR      extra kernel command line
  --dump NAME:LOCATION[:CONDITION[:MAXHITS[:TIMEOUT_S]]]
                    one dump (repeatable; replaces the default plan).
                    LOCATION is SYMBOL or SYMBOL+OFFSET (exact address);
                    CONDITION is one of any, irq_in_fault, kernel_fault_in_syscall,
                    softirq_el1, nested_irq (see gdb_dumper.py)
  --python PY       Python interpreter that has drgn (default: python3; env DRGN_PYTHON)
  --keep-full       keep the untrimmed vmcores (RAM size each)
  --keep-trimmed    keep the uncompressed trimmed vmcores next to the .xz
  --no-post         only boot and dump

Needs qemu-system-aarch64, gdb-multiarch, strace, xz and drgn.  Outputs per
dump NAME: NAME.vmcore.xz, NAME.drgn.json, NAME.drgn.txt; per boot:
console.log, sysrq-t.txt, sysrq-l.txt, qemu-cmdline.txt, gdb-cmds.gdb,
gdb-dumps.jsonl (how each dump was triggered), gdb.log, layout.json,
summary.json.  QEMU is always stopped (by its PID if QMP quit fails).
"""
import argparse
import hashlib
import json
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_PLAN = [
    "irq-in-fault:sched_tick:irq_in_fault:20000:300",
    "el1-abort:el1_abort:kernel_fault_in_syscall:5000:120",
    "softirq-irqstack:run_timer_softirq:softirq_el1:20000:300",
    "nested-irq:hrtimer_interrupt:nested_irq:100000:400",
    "hrtimer-plus8:hrtimer_interrupt+8:any:1:60",
    "hrtimer-plus12:hrtimer_interrupt+12:any:1:60",
]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def qmp_quit(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("r")
    f.readline()
    s.sendall(b'{"execute":"qmp_capabilities"}\n')
    f.readline()
    s.sendall(b'{"execute":"quit"}\n')
    for _ in range(20):  # read until the reply (skip events) so QEMU really exits
        line = f.readline()
        if not line or '"return"' in line:
            break
    s.close()


def split_console(console, out_dir):
    """sysrq-t.txt / sysrq-l.txt: the kernel lines of each sysrq section."""
    lines = pathlib.Path(console).read_text(errors="replace").splitlines()
    res = {}
    for name, start, stop in (("sysrq-t", "sysrq: Show State", "INIT: SYSRQ-T END"),
                              ("sysrq-l", "sysrq: Show backtrace of all active CPUs", "INIT: READY")):
        sel, on = [], False
        for ln in lines:
            if start in ln:
                on = True
            elif on and ln.startswith(stop):
                break
            if on and ln.startswith("["):
                sel.append(ln)
        with open(os.path.join(out_dir, name + ".txt"), "w") as f:
            f.write("\n".join(sel) + "\n")
        res[name] = len(sel)
    return res


def run(cmd, cwd, logname=None, timeout=None, check=True, env=None):
    out = open(os.path.join(cwd, logname), "w") if logname else subprocess.DEVNULL  # noqa: SIM115
    r = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed with {r.returncode}"
                           + (f" (see {logname})" if logname else ""))
    return r.returncode


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup (kill QEMU)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kernel"), ap.add_argument("--vmlinux"), ap.add_argument("--initrd")
    ap.add_argument("--mem", default="256M")
    ap.add_argument("--smp", default="2")
    ap.add_argument("--cpu", default="max,pauth-impdef=on")
    ap.add_argument("--kaslr", action="store_true")
    ap.add_argument("--append", default="")
    ap.add_argument("--dump", action="append", default=[])
    ap.add_argument("--python", default=os.environ.get("DRGN_PYTHON", "python3"))
    ap.add_argument("--keep-full", action="store_true")
    ap.add_argument("--keep-trimmed", action="store_true")
    ap.add_argument("--no-post", action="store_true")
    ap.add_argument("--boot-timeout", type=float, default=300)
    a = ap.parse_args()

    work = os.path.abspath(a.work)
    kernel = os.path.abspath(a.kernel or os.path.join(work, "vmlinuz"))
    vmlinux = os.path.abspath(a.vmlinux or os.path.join(work, "vmlinux"))
    initrd = os.path.abspath(a.initrd or os.path.join(work, "initramfs.cpio.gz"))
    for p in (kernel, vmlinux, initrd):
        if not os.path.isfile(p):
            sys.exit(f"missing {p} (run prepare.sh first)")
    tools = ["qemu-system-aarch64", "gdb-multiarch", "xz"] + ([] if a.no_post else ["strace"])
    for t in tools:
        if not shutil.which(t):
            sys.exit(f"missing tool: {t}")
    if not a.no_post and subprocess.run([a.python, "-c", "import drgn"]).returncode:
        sys.exit(f"{a.python} cannot import drgn (pip install drgn; or pass --python)")
    out = os.path.abspath(a.out)
    if os.path.exists(out) and os.listdir(out):
        sys.exit(f"{out} is not empty")
    os.makedirs(out, exist_ok=True)

    plan = []
    for spec in a.dump or DEFAULT_PLAN:
        f = spec.split(":")
        f += [None] * (5 - len(f))
        plan.append({"name": f[0], "location": f[1], "condition": f[2] or "any",
                     "maxhits": int(f[3] or 1000), "timeout": float(f[4] or 120)})

    # QEMU and gdb run inside OUT with relative names, so recorded command lines
    # and logs contain no host paths; the links are removed at the end.
    links = {"vmlinuz": kernel, "initramfs.cpio.gz": initrd, "vmlinux": vmlinux}
    for name, target in links.items():
        os.symlink(target, os.path.join(out, name))
    port = free_port()
    append = "console=ttyAMA0 earlycon panic=-1 loglevel=8" + ("" if a.kaslr else " nokaslr")
    if a.append:
        append += " " + a.append
    qemu = ["qemu-system-aarch64", "-M", "virt", "-cpu", a.cpu, "-smp", a.smp, "-m", a.mem,
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", "vmlinuz", "-initrd", "initramfs.cpio.gz", "-append", append,
            "-chardev", "file,id=con,path=console.log", "-serial", "chardev:con",
            "-device", "vmcoreinfo", "-qmp", "unix:qmp.sock,server=on,wait=off",
            "-gdb", f"tcp:127.0.0.1:{port}"]
    with open(os.path.join(out, "qemu-cmdline.txt"), "w") as f:
        f.write(shlex.join(qemu).replace(f"tcp:127.0.0.1:{port}", "tcp:127.0.0.1:PORT") + "\n")
    qver = subprocess.run(["qemu-system-aarch64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    gver = subprocess.run(["gdb-multiarch", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    summary = {"qemu": qver, "gdb": gver, "qemu_cmdline": pathlib.Path(os.path.join(out, "qemu-cmdline.txt")).read_text().strip(),
               "mem": a.mem, "smp": a.smp, "cpu": a.cpu, "kaslr": a.kaslr, "plan": plan}

    proc = None
    t0 = time.time()
    try:
        log(f"starting QEMU: {summary['qemu_cmdline']}")
        proc = subprocess.Popen(qemu, cwd=out, stdout=open(os.path.join(out, "qemu.log"), "w"),  # noqa: SIM115
                                stderr=subprocess.STDOUT)
        con = os.path.join(out, "console.log")
        text = ""
        while time.time() - t0 < a.boot_timeout:
            if proc.poll() is not None:
                raise RuntimeError("QEMU exited during boot (see qemu.log / console.log)")
            text = pathlib.Path(con).read_text(errors="replace") if os.path.exists(con) else ""
            if "INIT: READY" in text:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("timeout waiting for INIT: READY on the console")
        log(f"guest ready after {time.time() - t0:.1f} s")
        runtime_text = None
        for ln in text.splitlines():
            if ln.startswith("INIT: _text "):
                runtime_text = ln.split()[2]
        if not runtime_text:
            raise RuntimeError("the guest did not print its _text address")
        summary["runtime_text"] = "0x" + runtime_text

        cmds = ["set pagination off", "set confirm off", "set width 0",
                "set architecture aarch64", "file vmlinux",
                "kdump-init vmlinux gdb-dumps.jsonl",
                f"kdump-relocate vmlinux 0x{runtime_text}",
                f"target remote 127.0.0.1:{port}"]
        for d in plan:
            cmds.append(f"kdump-at {d['name']}.full.elf {d['location']} {d['condition']} "
                        f"{d['maxhits']} {d['timeout']}")
        cmds.append("detach")
        with open(os.path.join(out, "gdb-cmds.gdb"), "w") as f:
            f.write("\n".join(cmds).replace(f"127.0.0.1:{port}", "127.0.0.1:PORT") + "\n")
        with open(os.path.join(out, ".gdb-cmds.run"), "w") as f:
            f.write("\n".join(cmds) + "\n")
        gdb_timeout = sum(d["timeout"] for d in plan) + 300
        log(f"gdb: {len(plan)} dumps")
        run(["gdb-multiarch", "-q", "-batch", "-nx", "-readnever", "-x", os.path.join(HERE, "gdb_dumper.py"),
             "-x", ".gdb-cmds.run"], out, "gdb.log", timeout=gdb_timeout, check=False)
        os.unlink(os.path.join(out, ".gdb-cmds.run"))
        qmp_quit(os.path.join(out, "qmp.sock"))
        proc.wait(timeout=60)
        log(f"QEMU exited ({proc.returncode}) after {time.time() - t0:.1f} s")
    finally:
        if proc is not None and proc.poll() is None:
            log(f"killing QEMU pid {proc.pid}")
            proc.kill()
            proc.wait()
        for p in ("qmp.sock",):
            if os.path.exists(os.path.join(out, p)):
                os.unlink(os.path.join(out, p))

    summary["sysrq_lines"] = split_console(os.path.join(out, "console.log"), out)
    dumps = [json.loads(line) for line in pathlib.Path(os.path.join(out, "gdb-dumps.jsonl")).read_text().splitlines()] \
        if os.path.exists(os.path.join(out, "gdb-dumps.jsonl")) else []
    summary["dumps"] = dumps
    for d in dumps:
        log(f"{d['name']}: {'dumped' if d.get('dumped') else 'NOT dumped: ' + d.get('error', '?')}"
            f" (hits {d.get('hits')}, {d.get('seconds')} s)")

    failures = [d["name"] for d in dumps if not d.get("dumped")]
    if len(dumps) != len(plan):
        failures.append("gdb stopped early (see gdb.log)")
    if not a.no_post:
        post(a, out, vmlinux, dumps, summary)
        failures += [r["name"] for r in summary["results"] if not r["ok"]]
    for name in links:
        os.unlink(os.path.join(out, name))
    summary["seconds"] = round(time.time() - t0, 1)
    summary["failures"] = failures
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    log(f"done in {summary['seconds']} s; failures: {failures or 'none'}")
    return 1 if failures else 0


def post(a, out, vmlinux, dumps, summary):
    py = a.python
    drgn_ver = subprocess.run([py, "-c", "import drgn; print(drgn.__version__)"],
                              capture_output=True, text=True).stdout.strip()
    summary["drgn"] = drgn_ver
    summary["results"] = []
    layout = os.path.join(out, "layout.json")
    for d in dumps:
        if not d.get("dumped"):
            continue
        name = d["name"][:-len(".full.elf")]
        full = os.path.join(out, d["name"])
        os.chmod(full, 0o644)
        res = {"name": name, "ok": False}
        t0 = time.time()
        try:
            # 1. drgn on the full core, under strace: the reference + every page it reads
            trace = os.path.join(out, name + ".strace")
            run(["strace", "-f", "-y", "-s", "0", "-e", "trace=pread64", "-o", trace,
                 py, os.path.join(HERE, "drgn_reference.py"), "--touch", d["name"], "vmlinux",
                 name + ".full"], out, name + ".post.log")
            if not os.path.exists(layout):
                run([py, os.path.join(HERE, "export_layout.py"), d["name"], "vmlinux", "layout.json"], out)
                r = subprocess.run([sys.executable, os.path.join(HERE, "btf.py"), vmlinux, "--check", layout],
                                   capture_output=True, text=True)
                summary["layout_vs_btf"] = r.stdout.strip().splitlines()[-1]
                if r.returncode:
                    raise RuntimeError("layout.json does not match BTF: " + r.stdout)
            # 2. trim: drgn's pages + the independent walk's pages
            run([sys.executable, os.path.join(HERE, "trim_vmcore.py"), d["name"], name + ".vmcore",
                 "--strace", trace, "--layout", "layout.json", "--info", name + ".trim.json"], out)
            os.unlink(trace)
            res["trim"] = json.loads(pathlib.Path(os.path.join(out, name + ".trim.json")).read_text())
            os.unlink(os.path.join(out, name + ".trim.json"))
            # 3. independent check and drgn again, on the trimmed core
            r = subprocess.run([sys.executable, os.path.join(HERE, "vmcore_check.py"), name + ".vmcore",
                                "layout.json"], cwd=out, capture_output=True, text=True)
            res["independent_check"] = r.stdout.strip()
            run([py, os.path.join(HERE, "drgn_reference.py"), name + ".vmcore", "vmlinux", name + ".drgn"],
                out, name + ".post.log")
            a_ = json.loads(pathlib.Path(os.path.join(out, name + ".full.json")).read_text())
            b_ = json.loads(pathlib.Path(os.path.join(out, name + ".drgn.json")).read_text())
            a_.pop("vmcore"), b_.pop("vmcore")
            txt_a = pathlib.Path(os.path.join(out, name + ".full.txt")).read_text().split("\n", 1)[1]
            txt_b = pathlib.Path(os.path.join(out, name + ".drgn.txt")).read_text().split("\n", 1)[1]
            res["trimmed_equals_full"] = a_ == b_ and txt_a == txt_b
            r2 = subprocess.run([sys.executable, os.path.join(HERE, "compare_sysrq.py"), "sysrq-t.txt",
                                 name + ".drgn.json"], cwd=out, capture_output=True, text=True)
            res["sysrq_t_vs_drgn"] = r2.stdout.strip().split(": ", 1)[-1]
            for ext in (".full.json", ".full.txt", ".post.log"):
                os.unlink(os.path.join(out, name + ext))
            # 4. compress
            run(["xz", "-9e", "-T1", "-k", "-f", name + ".vmcore"], out)
            res["vmcore_bytes"] = os.path.getsize(os.path.join(out, name + ".vmcore"))
            res["xz_bytes"] = os.path.getsize(os.path.join(out, name + ".vmcore.xz"))
            res["vmcore_sha256"] = sha256(os.path.join(out, name + ".vmcore"))
            if not a.keep_trimmed:
                os.unlink(os.path.join(out, name + ".vmcore"))
            if not a.keep_full:
                os.unlink(full)
            res["ok"] = r.returncode == 0 and res["trimmed_equals_full"]
        except Exception as e:
            res["error"] = f"{type(e).__name__}: {e}"
        res["seconds"] = round(time.time() - t0, 1)
        summary["results"].append(res)
        log(f"{name}: {'OK' if res['ok'] else 'FAILED'} {res.get('independent_check', '')}; "
            f"trimmed==full: {res.get('trimmed_equals_full')}; xz {res.get('xz_bytes')} B; "
            f"sysrq-t vs drgn: {res.get('sysrq_t_vs_drgn')} {res.get('error', '')}")


if __name__ == "__main__":
    sys.exit(main())
