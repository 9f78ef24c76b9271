#!/usr/bin/env python3
"""Plot a `cachet bench serve --json` report: the TTFT distribution of each run (empirical
CDF) and the throughput of the runs side by side, into one PNG.

    python3 bench/plot.py bench.json [-o bench.png]

Needs matplotlib (Debian: apt-get install python3-matplotlib). Optional: nothing in the
build or the tests uses it.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402


def run_label(run):
    return "cache on" if run["prefix_caching"] else "cache off"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="JSON written by cachet bench serve --json")
    parser.add_argument("-o", "--output", help="PNG to write (default: REPORT with .png)")
    args = parser.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    output = args.output or (args.report.rsplit(".", 1)[0] + ".png")
    runs = report["runs"]
    if not runs:
        sys.exit(f"{args.report}: no runs")

    fig, (ax_ttft, ax_tput) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        ttft = sorted(r["ttft_ms"] for r in run["requests"] if r["finish_reason"] != "error")
        if not ttft:
            continue
        cdf = [(i + 1) / len(ttft) for i in range(len(ttft))]
        label = f"{run_label(run)} (mean {run['ttft_ms']['mean']:.1f} ms)"
        ax_ttft.step(ttft, cdf, where="post", label=label)
    ax_ttft.set_xscale("log")
    ax_ttft.set_xlabel("time to first token (ms, log scale)")
    ax_ttft.set_ylabel("fraction of requests")
    ax_ttft.set_title("TTFT distribution")
    ax_ttft.grid(True, which="both", alpha=0.3)
    ax_ttft.legend()

    metrics = [("output_tokens_per_s", "output tokens/s"), ("total_tokens_per_s", "total tokens/s")]
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        xs = [m + i * width for m in range(len(metrics))]
        values = [run[key] for key, _ in metrics]
        bars = ax_tput.bar(xs, values, width, label=run_label(run))
        ax_tput.bar_label(bars, fmt="%.0f")
    ax_tput.set_xticks([m + width * (len(runs) - 1) / 2 for m in range(len(metrics))])
    ax_tput.set_xticklabels([name for _, name in metrics])
    ax_tput.set_ylabel("tokens/s")
    ax_tput.set_title("throughput")
    ax_tput.legend()

    w = report["workload"]
    title = f"cachet bench serve: {w['name']}, {w['num_requests']} requests, {report['backend']}"
    if "comparison" in report:
        c = report["comparison"]
        if c["ttft_mean_ratio"] is not None:
            title += f"; TTFT off/on {c['ttft_mean_ratio']:.1f}x"
        if c["throughput_ratio"] is not None:
            title += f", throughput on/off {c['throughput_ratio']:.2f}x"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    print(output)


if __name__ == "__main__":
    main()
