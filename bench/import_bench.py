"""Cold import of what a cloud handler imports: ``kafka_backup`` plus the backup module.

Why it matters: a scheduled function pays its imports on every cold start, inside the platform's
timeout and on its bill.  Each sample is a fresh interpreter (``python -c``), so nothing is cached
in-process; the baseline is a bare interpreter start (``python -c pass``) measured in the same
process tree, so the figure that counts is the difference.  ``-X importtime`` of one more run
names the modules that cost the most.

Usage: ``python -m bench.import_bench [--repeat N] [--strict]`` (target: <= 1 s on the 2-core
development machine; ``--strict`` exits 1 when missed).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from bench._common import table, verdict

TARGET_S = 1.0
HANDLER_IMPORT = "import kafka_backup, kafka_backup.backup"


def _sample(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def _top_modules(code: str, n: int = 8) -> list[tuple[str, float]]:
    """The modules with the largest cumulative import time (``-X importtime``), in seconds."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True).stderr
    rows = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        if not name.startswith("  "):  # top-level imports only (nested ones are indented further)
            rows.append((name.strip(), int(cumulative_us) / 1e6))
    top = sorted(rows, key=lambda r: -r[1])
    return top[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = ap.parse_args(argv)
    _sample(HANDLER_IMPORT)  # warm the OS page cache: a platform's cold start reads from a warm image too
    base = [_sample("pass") for _ in range(args.repeat)]
    full = [_sample(HANDLER_IMPORT) for _ in range(args.repeat)]
    b, f = statistics.median(base), statistics.median(full)
    cost = f - b
    print(table(["what", "median s", "min s", "max s"], [
        ["python -c pass (baseline)", f"{b:.3f}", f"{min(base):.3f}", f"{max(base):.3f}"],
        [HANDLER_IMPORT, f"{f:.3f}", f"{min(full):.3f}", f"{max(full):.3f}"],
        ["import cost (difference)", f"{cost:.3f}", "", ""],
    ]))
    print(f"\nimport cost {cost:.3f}s vs target {TARGET_S:.1f}s: {verdict(cost <= TARGET_S)} "
          f"({f / b:.1f}x a bare interpreter start)")
    print("\nlargest cumulative imports (-X importtime):")
    for name, seconds in _top_modules(HANDLER_IMPORT):
        print(f"  {seconds:7.3f}s  {name}")
    return 1 if args.strict and cost > TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
