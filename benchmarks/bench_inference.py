#!/usr/bin/env python
"""Speed and memory of the bit-packed inference engine (stbin.deploy) against torch float32.

A thin wrapper of ``stbin bench-inference`` (see ``stbin bench-inference --help``) that
runs it ``--runs`` times and keeps every JSON result, so that a busy machine shows up as
spread rather than as one lucky or unlucky number::

    python benchmarks/bench_inference.py                      # 3 runs, 4096x4096 at batch 256, demo net
    python benchmarks/bench_inference.py --runs 1 --json out.json
    python benchmarks/bench_inference.py -- --linear-size 1024 --threads 1   # options after -- go to the command

Figures, the machine and the command are recorded in docs/performance-deploy.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _timing import finish  # this folder's helper


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="independent runs of the command (default: 3)")
    p.add_argument("--json", default=None, help="write all results to this file")
    p.add_argument("rest", nargs="*", help="options passed to 'stbin bench-inference' (after --)")
    args = p.parse_args(argv)
    results = []
    for i in range(args.runs):
        r = subprocess.run([sys.executable, "-m", "stbin.cli.main", "bench-inference", "--json", *args.rest],
                           capture_output=True, text=True)
        if r.returncode:
            sys.stderr.write(r.stderr)
            return r.returncode
        results.append(json.loads(r.stdout))
        lin, m = results[-1].get("linear"), results[-1]["model"]
        if lin:
            print(f"run {i + 1}: linear {lin['size']}x{lin['size']} batch {lin['batch']}: torch {lin['torch_ms']:.2f} ms, "
                  f"engine {lin['engine_ms']:.2f} ms -> {lin['speedup']:.1f}x (wall {lin['wall_speedup']:.1f}x, "
                  f"CPU time {lin['cpu_time_speedup']:.1f}x); per core {lin['engine_gmacs_per_core']:.0f} of "
                  f"{lin['popcount_peak_gmacs_per_core']:.0f} GMAC/s roofline "
                  f"({100 * lin['fraction_of_popcount_peak']:.0f}%)")
        print(f"run {i + 1}: model batch {m['batch']}: {m['throughput_speedup']:.2f}x throughput, "
              f"batch 1: {m['latency_speedup']:.2f}x latency, memory {m['memory_ratio']:.2f}x, "
              f"binary weights {m['binary_weights_ratio']}x; load average {results[-1]['load_average']}")
    if len(results) > 1 and results[0].get("linear"):
        sp = [r["linear"]["speedup"] for r in results]
        print(f"linear speedup over {len(sp)} runs: median {statistics.median(sp):.1f}x (min {min(sp):.1f}, "
              f"max {max(sp):.1f})")
    return finish(args.json, results)


if __name__ == "__main__":
    sys.exit(main())
