"""Shared by the benchmark reports: machine facts and a sectioned docs/benchmarks.md.

Each suite owns the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` and rewrites only
that; sections that are missing are appended in the order of ``ORDER``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")

#: the order sections are appended in when missing (other suites add their names here)
ORDER = ("layers", "micro", "e2e", "native", "sandbox", "listener", "reload")

HEADER = """# Benchmarks

Measured on the machine named in each section, peers and covet-pipe in the same run; ratios within one
run are what count (absolute speeds move between machines and days). Each section is rewritten by its
own script: `make bench` (per-layer suite + micro suite), `make bench-e2e` (uvicorn under wrk),
`make bench-sandbox` (the sandboxed hook call against a raw socketpair round trip).
Method: DESIGN.md section 3 "How we measure".

"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    """One markdown line naming the machine, the interpreter and the date."""
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    return (f"{date}; {cpu_model()}, {os.cpu_count()} logical CPUs; {impl}; "
            f"Linux {platform.release()} ({platform.machine()})")


def versions(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for n in names:
        try:
            out.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def command() -> str:
    return " ".join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT)
                     else "python"] + sys.argv)


def update_section(name: str, body: str) -> str:
    """Replace (or add) section *name* of docs/benchmarks.md with *body*; returns the path."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    try:
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        # insert before the first existing section that comes later in ORDER
        later = ORDER[ORDER.index(name) + 1:] if name in ORDER else ()
        pos = -1
        for other in later:
            pos = text.find(f"<!-- {other}:begin -->")
            if pos >= 0:
                break
        if pos >= 0:
            text = text[:pos] + block + "\n" + text[pos:]
        else:
            text = text.rstrip("\n") + "\n\n" + block
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(text)
    return DOC
