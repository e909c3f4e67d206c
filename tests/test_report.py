"""The HTML report: structure and self-containment on synthetic data, the real dump, and a
headless-Chromium screenshot that must show the page (not a blank or error page)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sfunwind.cli.main import main
from sfunwind.livepatch.patch import RangePlan
from sfunwind.livepatch.transition import FuncRange, TaskInfo, try_complete_transition
from sfunwind.report.html import (
    CpuLine,
    DumpReport,
    blocking_candidates,
    render,
    unreliable_sources,
)
from sfunwind.unwind.trace import Event, EventKind, Frame, Mode, Reason, Source, Trace

DATA = Path(__file__).parent / "data"
FIX = DATA / "linux-7.2.13-cloud-arm64"
VMLINUX = FIX / "vmlinux.debug.xz"
PLUS8 = FIX / "nokaslr" / "hrtimer-plus8.vmcore.xz"
KO = DATA / "livepatch" / "livepatch-sfunwind.ko"

WIDTH, HEIGHT = 1280, 2000


class Tags(HTMLParser):
    """Collects tags/attributes; fails on anything that would load an external resource."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def assert_self_contained(page: str) -> Tags:
    p = Tags()
    p.feed(page)
    names = [t for t, _ in p.tags]
    assert "script" not in names and "link" not in names and "img" not in names
    assert "iframe" not in names and "object" not in names
    for tag, attrs in p.tags:
        for k in ("src", "href", "data", "srcset", "action"):
            v = attrs.get(k)
            assert v is None or v.startswith("#"), (tag, k, v)  # in-page anchors only
    assert "url(" not in page and "@import" not in page
    return p


def _t(pcs, *, reliable=True, reasons=(), events=(), markers=None, symbols=None):
    markers = markers or {}
    frames = []
    for i, pc in enumerate(pcs):
        f = Frame(pc=pc, source=markers.get(i, Source.TASK if i == 0 else Source.FRAME),
                  stack="task")
        if symbols:
            f.symbol, f.offset, f.size = symbols[i], 4 * i, 0x100
        frames.append(f)
    return Trace(frames=frames, mode=Mode.SFRAME, reliable=reliable, reasons=list(reasons),
                 events=list(events))


def synthetic() -> DumpReport:
    tasks = [TaskInfo(1, "init", task=0x10, state="S", cpu=0),
             TaskInfo(2, "<script>x</script>", task=0x20, state="R", cpu=0),
             TaskInfo(3, "busy", task=0x30, state="R", cpu=1, running=True)]
    boundary = Event(EventKind.EXCEPTION_BOUNDARY, 2, "pt_regs at 0xffff1000 on the task stack")
    final = Event(EventKind.FINAL, 4, "FINAL record", 0xFFFF3FE8)
    up = {0x10: _t([0x1000, 0x2000], symbols=["__switch_to", "do_wait"]),
          0x20: _t([0x1000, 0x3000, 0x4000, 0x5000], reliable=False,
                   reasons=[Reason("exception-boundary", "crosses pt_regs", 2, 0x4000)],
                   events=[boundary, final], markers={2: Source.REGS_PC},
                   symbols=["__switch_to", "el1h_64_irq", "leaf_fn", "caller"]),
          0x30: _t([0x6000], markers={0: Source.REGS_PC}, symbols=["hrtimer_interrupt"])}
    sf = dict(up)
    sf[0x20] = _t([0x1000, 0x3000, 0x4000, 0x4800, 0x5000], events=[boundary, final],
                  markers={2: Source.REGS_PC, 3: Source.REGS_LR},
                  symbols=["__switch_to", "el1h_64_irq", "leaf_fn", "lr_caller", "caller"])
    traces = {Mode.UPSTREAM: up, Mode.SFRAME: sf}
    ranges = [FuncRange("lr_caller", 0x4800, 0x100), FuncRange("do_wait", 0x2000, 0x10)]
    plan = RangePlan("patching", ranges, ["object ext4: module not loaded"])
    rep = DumpReport("synthetic <dump>", [("kernel", "7.2.13")], [CpuLine(1, 3, "busy",
                                                                           "hrtimer_interrupt+0x8")],
                     tasks, traces, plan=plan)

    def provide(task, mode):
        return traces[mode][task.task]
    for m in (Mode.UPSTREAM, Mode.SFRAME):
        rep.results[m] = try_complete_transition(tasks, ranges, provide, m)
    return rep


def test_synthetic_page_sections_escaping_and_highlights():
    rep = synthetic()
    page = render(rep)
    p = assert_self_contained(page)
    ids = {a.get("id") for _, a in p.tags}
    assert {"overview", "chart", "livepatch", "reliability", "traces"} <= ids
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "synthetic &lt;dump&gt;" in page
    # one collapsible trace block per task, both modes side by side
    assert sum(1 for t, a in p.tags if t == "details" and (a.get("id") or "").startswith("t")) == 3
    # markers and boundaries are highlighted
    assert page.count('class="m m-P"') >= 3 and 'class="m m-L"' in page
    assert page.count("class='ev boundary'") == 2 and "class='ev final'" in page
    assert "class='patched'" in page  # lr_caller / do_wait frames
    assert "class='cause'" in page  # where upstream gave up
    # the livepatch section: upstream -EINVAL, sframe finds the task in lr_caller via (L)
    text = " ".join(p.text)
    assert "revealed" in text
    assert "STALLS" in text
    # the chart: one category, upstream only
    assert unreliable_sources(rep) == {"exception-boundary at leaf_fn": {"upstream": 1}}
    assert re.search(r"<svg[^>]*aria-label='unreliable verdicts by cause'", page)
    assert blocking_candidates(rep, Mode.SFRAME)["lr_caller"] == 1
    assert blocking_candidates(rep, Mode.UPSTREAM)["lr_caller"] == 0


def test_page_without_patch_shows_what_any_patch_meets():
    rep = synthetic()
    rep.plan, rep.results = None, {}
    page = render(rep)
    assert_self_contained(page)
    assert "No patch given" in page and "1 running task(s) are -EBUSY (busy:3)" in page


@pytest.fixture(scope="module")
def real_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    rc = main(["report", str(PLUS8), "-s", str(VMLINUX), "-o", str(out), "--ko", str(KO)])
    assert rc == 0
    return out


def test_real_dump_page(real_page):
    page = real_page.read_text()
    p = assert_self_contained(page)
    details = [a for t, a in p.tags if t == "details" and (a.get("id") or "").startswith("t")]
    assert len(details) == 72  # every thread and both idle tasks
    # pid 113's SFrame trace reports the LR-only caller as (L), in the patched range
    assert 'chacha_block_generic+0x68/0x160<span class="m m-L">L</span>' in page
    assert "klp_check_stack_func" in page
    text = " ".join(p.text)
    assert "patching transition, upstream unwinder: STALLS: 8 of 72 tasks" in text
    assert "patching transition, sframe unwinder: STALLS: 7 of 72 tasks" in text
    assert "exception-boundary at chacha_permute" in text  # a chart category


def _png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into an array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0
    bpp = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * bpp + 1)
    out = np.zeros((h, w * bpp), np.uint8)
    prev = np.zeros(w * bpp, np.int32)
    for y in range(h):
        f, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = row
        elif f == 1:
            cur = np.cumsum(row.reshape(w, bpp), axis=0).reshape(-1) % 256
        elif f == 2:
            cur = (row + prev) % 256
        else:
            cur_l = [0] * (w * bpp)
            r, pv = row.tolist(), prev.tolist()
            for i in range(w * bpp):
                a = cur_l[i - bpp] if i >= bpp else 0
                b = pv[i]
                c = pv[i - bpp] if i >= bpp else 0
                if f == 3:
                    cur_l[i] = (r[i] + ((a + b) >> 1)) & 255
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur_l[i] = (r[i] + pred) & 255
            cur = np.array(cur_l, np.int32)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_chromium_renders_the_report(real_page, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("SFUNWIND_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
         "--disable-dev-shm-usage",
         "--force-device-scale-factor=1", f"--window-size={WIDTH},{HEIGHT}",
         f"--screenshot={shot}", real_page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert shot.exists(), proc.stderr[-2000:]
    img = _png(shot)
    assert img.shape == (HEIGHT, WIDTH, 3)
    flat = img.reshape(-1, 3)
    colors = {tuple(c) for c in flat[:: 97].tolist()}
    assert len(colors) > 50  # text, badges, bars: not a blank or single-colour error page

    def has(rgb: tuple[int, int, int], region: np.ndarray, tol: int = 3) -> int:
        return int(np.sum(np.all(np.abs(region.astype(int) - rgb) <= tol, axis=-1)))

    # the dark header band across the top, the page background below it
    assert has((0x1F, 0x2D, 0x3A), img[:60]) > 0.5 * 60 * WIDTH
    assert has((0xF6, 0xF7, 0xF9), img) > 0.05 * WIDTH * HEIGHT
    # the inline SVG chart drew bars in both modes' colours
    assert has((0xC0, 0x39, 0x2B), img) > 1000  # upstream bars
    assert has((0x2E, 0x86, 0xC1), img) > 1000  # sframe bars
