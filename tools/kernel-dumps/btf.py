#!/usr/bin/env python3
"""btf.py -- a small reader for the kernel's .BTF section (no dependencies).

usage:
  btf.py VMLINUX 'struct task_struct' stack thread.cpu_context.fp ...
        print byte offsets of (nested) members, and the struct size
  btf.py VMLINUX --check layout.json
        compare every struct offset/size in layout.json (see export_layout.py)
        with BTF; exit status 1 on any mismatch

VMLINUX is any ELF file that has a .BTF section with contents (for example the
reduced vmlinux.debug), or a raw .BTF blob.
"""
import json
import pathlib
import struct
import sys

KIND = {1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM", 7: "FWD",
        8: "TYPEDEF", 9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC",
        13: "FUNC_PROTO", 14: "VAR", 15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG",
        18: "TYPE_TAG", 19: "ENUM64"}


def btf_section(path):
    f = open(path, "rb")  # noqa: SIM115 - read in several steps below
    head = f.read(64)
    if head[:2] == b"\x9f\xeb":
        return head + f.read()
    if head[:4] != b"\x7fELF":
        raise ValueError("neither ELF nor BTF")
    shoff, = struct.unpack_from("<Q", head, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
    f.seek(shoff)
    raw = f.read(shentsize * shnum)
    secs = [struct.unpack_from("<IIQQQQIIQQ", raw, i * shentsize) for i in range(shnum)]
    f.seek(secs[shstrndx][4])
    names = f.read(secs[shstrndx][5])
    for s in secs:
        name = names[s[0]:].split(b"\0", 1)[0].decode()
        if name == ".BTF":
            if s[1] == 8:  # SHT_NOBITS
                raise ValueError(".BTF has no contents (SHT_NOBITS)")
            f.seek(s[4])
            return f.read(s[5])
    raise ValueError("no .BTF section")


class BTF:
    def __init__(self, blob):
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            struct.unpack_from("<HBBIIIII", blob, 0)
        if magic != 0xEB9F:
            raise ValueError("bad BTF magic")
        self.types = [None]  # type id 0 is void
        tb = blob[hdr_len + type_off:hdr_len + type_off + type_len]
        self.strs = blob[hdr_len + str_off:hdr_len + str_off + str_len]
        pos = 0
        while pos < len(tb):
            name_off, info, size_type = struct.unpack_from("<III", tb, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = info >> 31
            t = {"kind": KIND.get(kind, kind), "name": self.s(name_off), "size_type": size_type,
                 "kflag": kflag}
            if kind == 1 or kind == 14 or kind == 17:
                pos += 4
            elif kind == 3:
                t["elem"], t["index"], t["nelems"] = struct.unpack_from("<III", tb, pos)
                pos += 12
            elif kind in (4, 5):
                mem = []
                for i in range(vlen):
                    mn, mt, mo = struct.unpack_from("<III", tb, pos + 12 * i)
                    bit_off = (mo & 0xFFFFFF) if kflag else mo
                    mem.append((self.s(mn), mt, bit_off))
                t["members"] = mem
                pos += 12 * vlen
            elif kind == 6:
                t["values"] = [(self.s(n), v) for n, v in
                               (struct.unpack_from("<Ii", tb, pos + 8 * i) for i in range(vlen))]
                pos += 8 * vlen
            elif kind == 19:
                vals = []
                for i in range(vlen):
                    n, lo, hi = struct.unpack_from("<III", tb, pos + 12 * i)
                    vals.append((self.s(n), lo | hi << 32))
                t["values"] = vals
                pos += 12 * vlen
            elif kind == 13:
                pos += 8 * vlen
            elif kind == 15:
                t["vars"] = [struct.unpack_from("<III", tb, pos + 12 * i) for i in range(vlen)]
                pos += 12 * vlen
            elif kind in (2, 7, 8, 9, 10, 11, 12, 16, 18):
                pass
            else:
                raise ValueError(f"unknown BTF kind {kind} at type {len(self.types)}")
            self.types.append(t)
        self.by_name = {}
        for i, t in enumerate(self.types):
            if t and t["name"]:
                self.by_name.setdefault((t["kind"], t["name"]), i)

    def s(self, off):
        return self.strs[off:self.strs.index(b"\0", off)].decode()

    def resolve(self, tid):
        """Skip typedefs and qualifiers."""
        while self.types[tid] and self.types[tid]["kind"] in ("TYPEDEF", "VOLATILE", "CONST",
                                                             "RESTRICT", "TYPE_TAG"):
            tid = self.types[tid]["size_type"]
        return tid

    def find(self, cname):
        """'struct task_struct' / 'union x' / 'enum y' / typedef name -> type id"""
        if " " in cname:
            kw, name = cname.split(None, 1)
            kind = {"struct": "STRUCT", "union": "UNION", "enum": "ENUM"}[kw]
            tid = self.by_name.get((kind, name))
            if tid is None and kind == "ENUM":
                tid = self.by_name.get(("ENUM64", name))
        else:
            tid = self.by_name.get(("TYPEDEF", cname))
        if tid is None:
            raise KeyError(cname)
        return tid

    def sizeof(self, tid):
        tid = self.resolve(tid)
        t = self.types[tid]
        if t["kind"] == "ARRAY":
            return t["nelems"] * self.sizeof(t["elem"])
        if t["kind"] == "PTR":
            return 8
        return t["size_type"]

    def _member(self, tid, name):
        """Find a member by name, descending into anonymous structs/unions."""
        t = self.types[self.resolve(tid)]
        for mname, mtype, bit_off in t.get("members", []):
            if mname == name:
                return mtype, bit_off
            if mname == "":
                sub = self.types[self.resolve(mtype)]
                if sub["kind"] in ("STRUCT", "UNION"):
                    try:
                        st, so = self._member(mtype, name)
                        return st, bit_off + so
                    except KeyError:
                        pass
        raise KeyError(name)

    def offsetof(self, tid, path):
        """'thread.cpu_context.fp' or 'regs[29]' -> (byte offset, member type id)"""
        off = 0
        for part in path.split("."):
            idx = None
            if "[" in part:
                part, rest = part.split("[", 1)
                idx = int(rest.rstrip("]"), 0)
            tid, bit_off = self._member(tid, part)
            if bit_off % 8:
                raise ValueError(f"{path}: bit-field")
            off += bit_off // 8
            if idx is not None:
                arr = self.types[self.resolve(tid)]
                tid = arr["elem"]
                off += idx * self.sizeof(tid)
        return off, tid

    def enum(self, cname):
        return dict(self.types[self.find(cname)]["values"])


def check_layout(btf, layout):
    """Compare layout.json (from DWARF) with BTF.  Returns list of mismatches."""
    bad = []
    n = 0
    for cname, fields in layout.get("structs", {}).items():
        tid = btf.find(cname)
        for key, want in fields.items():
            if key == "size":
                got = btf.sizeof(tid)
            else:
                got = btf.offsetof(tid, key)[0]
            n += 1
            if got != want:
                bad.append(f"{cname}.{key}: layout {want} != BTF {got}")
    for cname, fields in layout.get("member_sizes", {}).items():
        tid = btf.find(cname)
        for key, want in fields.items():
            got = btf.sizeof(btf.offsetof(tid, key)[1])
            n += 1
            if got != want:
                bad.append(f"sizeof {cname}.{key}: layout {want} != BTF {got}")
    for cname, values in layout.get("enums", {}).items():
        got = btf.enum(cname)
        for k, v in values.items():
            n += 1
            if got.get(k) != v:
                bad.append(f"{cname} {k}: layout {v} != BTF {got.get(k)}")
    return n, bad


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    btf = BTF(btf_section(argv[1]))
    if argv[2] == "--check":
        layout = json.loads(pathlib.Path(argv[3]).read_text())
        n, bad = check_layout(btf, layout)
        for b in bad:
            print("MISMATCH", b)
        print(f"{n} values compared, {len(bad)} mismatches ({len(btf.types) - 1} BTF types)")
        return 1 if bad else 0
    tid = btf.find(argv[2])
    print(f"{argv[2]}: size {btf.sizeof(tid)}")
    for path in argv[3:]:
        off, _mt = btf.offsetof(tid, path)
        print(f"  {path}: {off}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
