"""Access to the SFrame fixture corpus of tests/data/sframe (see its README.md).

Independent of sfunwind's codec on purpose: section bytes come from pyelftools, the reference
answers from the committed objdump / libsframe outputs.
"""

from __future__ import annotations

import io
import json
import lzma
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from elftools.elf.elffile import ELFFile

CORPUS = Path(__file__).parent / "data" / "sframe"

#: which libsframe is the lookup reference for each SFrame version (README.md explains why
#: 2.47 is not the reference for v2: it looks up non-PCREL v2 sections at wrong addresses)
REFERENCE_LIBSFRAME = {3: "2.47", 2: "2.44", 1: "2.40"}


@dataclass(frozen=True)
class Fixture:
    toolchain: str
    name: str
    file: str
    arch: str
    sframe_version: int
    kind: str
    objdump: dict
    libsframe: dict
    sframe_vma: int | None

    @property
    def id(self) -> str:
        return f"{self.toolchain.split('-')[0]}/{self.name}"

    @property
    def dir(self) -> Path:
        return CORPUS / self.toolchain

    def data(self) -> bytes:
        return _file_bytes(self.toolchain, self.file)

    def section(self) -> tuple[bytes, int]:
        """The raw ``.sframe`` bytes (unrelocated for ``.o``) and ``sh_addr``."""
        elf = ELFFile(io.BytesIO(self.data()))
        sec = elf.get_section_by_name(".sframe")
        assert sec is not None, f"{self.id}: no .sframe section"
        return sec.data(), sec["sh_addr"]

    def materialise(self, directory: Path) -> Path:
        """The fixture as a file named ``name`` in ``directory`` (decompressed if stored .xz)."""
        path = directory / self.name
        if not path.exists():
            path.write_bytes(self.data())
        return path

    def objdump_text(self, label: str) -> str:
        return (self.dir / self.objdump[label]["stdout"]).read_text()

    def oracle_text(self, label: str) -> str:
        return lzma.decompress((self.dir / self.libsframe[label]["file"]).read_bytes()).decode()


@cache
def _file_bytes(toolchain: str, file: str) -> bytes:
    raw = (CORPUS / toolchain / file).read_bytes()
    return lzma.decompress(raw) if file.endswith(".xz") else raw


@cache
def manifest() -> dict:
    return json.loads((CORPUS / "manifest.json").read_text())


@cache
def fixtures() -> tuple[Fixture, ...]:
    return tuple(Fixture(toolchain=e["toolchain"], name=e["name"], file=e["file"], arch=e["arch"],
                         sframe_version=e["sframe_version"], kind=e["kind"],
                         objdump=e["objdump"], libsframe=e["libsframe"],
                         sframe_vma=e.get("sframe_vma"))
                 for e in manifest()["fixtures"])


def linked_fixtures() -> tuple[Fixture, ...]:
    return tuple(f for f in fixtures() if f.kind != "obj")


# --------------------------------------------------------------------------------------------
# libsframe oracle output (tools/libsframe_oracle.c)

@dataclass(frozen=True)
class OracleFDE:
    index: int
    start: int
    size: int
    nfres: int
    info: int
    info2: int
    rep: int

    @property
    def pcmask(self) -> bool:
        return bool(self.info & 0x10)

    @property
    def flex(self) -> bool:
        return (self.info2 & 0x1F) == 1


@dataclass(frozen=True)
class OracleHit:
    pc: int
    fde: int | None
    fre_start: int
    fre_info: int
    words: tuple[int, ...]
    cfa: int | None
    ra: int | str  # offset, "none" or "undef"
    fp: int | str  # offset or "none"
    mangled: bool


@dataclass(frozen=True)
class Oracle:
    api: str  # "2.46+", "2.41-2.45" or "2.40": which libsframe answered
    header: dict[str, str]
    fdes: tuple[OracleFDE, ...]
    misses: tuple[int, ...]
    hits: tuple[OracleHit, ...]

    @property
    def fixed_ra(self) -> int:
        return int(self.header["fixed_ra"])

    @property
    def fixed_fp(self) -> int:
        return int(self.header["fixed_fp"])


_HIT = re.compile(r"([0-9a-f]+) hit fde=(\d+|-) fre=([0-9a-f]+) info=0x([0-9a-f]+) "
                  r"words=(\S+) cfa=(\S+) ra=(\S+) fp=(\S+) mangled=([01])$")
_FDE = re.compile(r"fde (\d+) start=([0-9a-f]+) size=(\d+) nfres=(\d+) info=0x([0-9a-f]+) "
                  r"info2=0x([0-9a-f]+) rep=(\d+)$")


def _num_or_word(text: str) -> int | str:
    return text if text in ("none", "undef") else int(text)


def parse_oracle(text: str) -> Oracle:
    lines = text.splitlines()
    assert lines and lines[0].startswith("# libsframe "), lines[:1]
    api = lines[0].split()[2]
    header = dict(kv.split("=", 1) for kv in lines[0].split()[3:])
    fdes: list[OracleFDE] = []
    misses: list[int] = []
    hits: list[OracleHit] = []
    for line in lines[1:]:
        if line.endswith(" miss"):
            misses.append(int(line[:-5], 16))
        elif line.startswith("fde "):
            m = _FDE.match(line)
            assert m, line
            fdes.append(OracleFDE(int(m[1]), int(m[2], 16), int(m[3]), int(m[4]), int(m[5], 16),
                                  int(m[6], 16), int(m[7])))
        else:
            m = _HIT.match(line)
            assert m, line
            hits.append(OracleHit(
                pc=int(m[1], 16), fde=None if m[2] == "-" else int(m[2]), fre_start=int(m[3], 16),
                fre_info=int(m[4], 16),
                words=() if m[5] == "-" else tuple(int(w) for w in m[5].split(",")),
                cfa=None if m[6] == "none" else int(m[6]), ra=_num_or_word(m[7]),
                fp=_num_or_word(m[8]), mangled=m[9] == "1"))
    return Oracle(api, header, tuple(fdes), tuple(misses), tuple(hits))


# --------------------------------------------------------------------------------------------
# objdump --sframe text

_FDE_LINE = re.compile(r"    func idx \[(\d+)\]: pc = 0x([0-9a-f]+), size = (\d+) bytes(.*)$")
_ROW_LINE = re.compile(r"    ([0-9a-f]{16})  (.*?)\s*$")


def objdump_fdes(text: str) -> list[dict]:
    """FDEs and rows as objdump printed them:
    ``[{'pc', 'size', 'attrs', 'rows': [(address, [cfa, fp, ra] or ['RA', 'undefined'])]}]``."""
    fdes: list[dict] = []
    for line in text.splitlines():
        m = _FDE_LINE.match(line)
        if m:
            fdes.append({"pc": int(m[2], 16), "size": int(m[3]), "attrs": m[4], "rows": []})
            continue
        m = _ROW_LINE.match(line)
        if m and fdes:
            fdes[-1]["rows"].append((int(m[1], 16), m[2].split()))
    return fdes
