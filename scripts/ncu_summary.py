#!/usr/bin/env python3
"""Summarizes an `ncu --csv --print-units base` run of one decode step, per kernel name.

    ncu --clock-control none --profile-from-start off --print-units base --csv \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
        build/gpu/bench/bench_cuda_engine --profile-step 1 > step.csv
    scripts/ncu_summary.py step.csv

Prints a Markdown table: launches, summed kernel time, share of the step, DRAM bytes read
and the achieved read bandwidth per kernel name, longest first. ncu serializes kernels and
times each alone, so the sum is the step without overlap or launch gaps; compare it with
the step time the benchmark measures to see what the gaps cost.
"""
import collections
import csv
import sys


def number(text):
    return float(text.replace(",", "")) if text not in ("", "n/a") else 0.0


def main(path):
    with open(path, newline="") as f:
        # ncu prints its own "==PROF==" lines and the program's output before the table.
        lines = [line for line in f if line.startswith('"')]
    kernels = {}  # launch ID -> (name, {metric: value})
    for row in csv.DictReader(lines):
        launch = kernels.setdefault(row["ID"], (row["Kernel Name"], {}))
        launch[1][row["Metric Name"]] = number(row["Metric Value"])
    if not kernels:
        sys.exit(f"{path}: no kernel rows (did ncu profile anything?)")
    by_name = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for name, metrics in kernels.values():
        short = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
        short = short.removeprefix("void ").split("(")[0].split("<")[0].strip() or name
        entry = by_name[short]
        entry[0] += 1
        entry[1] += metrics.get("gpu__time_duration.sum", 0.0)  # ns
        entry[2] += metrics.get("dram__bytes_read.sum", 0.0)
        entry[3] += metrics.get("dram__bytes_write.sum", 0.0)
    total_ns = sum(e[1] for e in by_name.values())
    total_read = sum(e[2] for e in by_name.values())
    print(f"{len(kernels)} kernels, {total_ns / 1e3:.1f} us summed, "
          f"{total_read / 1e9:.3f} GB read from DRAM "
          f"({total_read / total_ns if total_ns else 0:.0f} GB/s over the summed time)\n")
    print("| kernel | launches | us | share | MB read | GB/s read |")
    print("|---|---|---|---|---|---|")
    for short, (count, ns, read, _) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        share = 100.0 * ns / total_ns if total_ns else 0.0
        gbps = read / ns if ns else 0.0  # bytes per ns = GB/s
        print(f"| {short[:70]} | {count} | {ns / 1e3:.1f} | {share:.1f} % | "
              f"{read / 1e6:.1f} | {gbps:.0f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ncu_summary.py STEP.csv")
    main(sys.argv[1])
