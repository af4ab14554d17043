"""Summarise a py-spy ``record --format raw --threads`` file: where each thread spends its samples.

py-spy drops samples of threads that are idle (blocked in a system call, waiting for the GIL or a
lock), so the counts approximate CPU time.  Usage: ``python -m bench._profile FILE [--top N]``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"\s\(([^()]*?):\d+\)")  # " (file.py:123)" -> " (file.py)"
_THREAD = re.compile(r"^thread \(\d+\): ?(.*)$")
_POOL = re.compile(r"_\d+$")


def _fn(frame: str) -> str:
    return _LINE.sub(r" (\1)", frame)


def load(path: Path) -> list[tuple[str, list[str], int]]:
    """(thread name, frames root first, samples) per distinct stack."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        m = _THREAD.match(frames[0])
        thread = _POOL.sub("_*", (m.group(1) or "?") if m else "?")
        out.append((thread, [_fn(f) for f in (frames[1:] if m else frames)], int(count)))
    return out


def summary(path: Path, top: int = 18) -> str:
    stacks = load(path)
    total = sum(n for _, _, n in stacks) or 1
    threads: Counter[str] = Counter()
    selfs: Counter[tuple[str, str]] = Counter()
    incl: Counter[tuple[str, str]] = Counter()
    for thread, frames, n in stacks:
        threads[thread] += n
        if frames:
            selfs[(thread, frames[-1])] += n
        for f in set(frames):
            incl[(thread, f)] += n
    lines = [f"  {total} busy samples (idle threads are not sampled); per thread:"]
    lines += [f"    {n * 100 / total:5.1f}%  {t}" for t, n in threads.most_common()]
    lines.append("  top self time (function, thread), % of all busy samples:")
    lines += [f"    {n * 100 / total:5.1f}%  {f}  [{t}]" for (t, f), n in selfs.most_common(top)]
    lines.append("  top inclusive time in the main thread, % of all busy samples:")
    skip = ("<module>", "_run_module_as_main", "_run_code", "main (bench", "_timed (bench", "run (bench")
    main_incl = [(f, n) for (t, f), n in incl.most_common() if t == "MainThread" and not f.startswith(skip)]
    lines += [f"    {n * 100 / total:5.1f}%  {f}" for f, n in main_incl[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 18
    print(summary(Path(sys.argv[1]), top))
