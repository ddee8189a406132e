"""Run every benchmark with its default settings, in order and each in its own process.

``make bench`` runs this. If a benchmark fails, the later ones still run and
the exit status is 1.
"""

from __future__ import annotations

import subprocess
import sys

from bench.servers import REPOSITORY

# Modules run with ``python -m``, in this order.
BENCHMARKS = ("bench.core_rest", "bench.admission_overhead")


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        completed = subprocess.run([sys.executable, "-m", module], cwd=REPOSITORY, check=False)
        if completed.returncode != 0:
            print(f"{module} failed with exit status {completed.returncode}", file=sys.stderr)
            failed.append(module)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
