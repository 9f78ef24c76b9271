#!/usr/bin/env python3
"""Latency of small `cachet serve` requests, kept-alive and on fresh connections (medians).

Usage: serve_latency.py PORT [MODEL_NAME]  (a running `cachet serve`; docs/benchmarks.md,
"cachet serve: keep-alive latency and the cost of a scrape"). Sends 50 completions first so
that /metrics holds values.
"""
import http.client
import json
import statistics
import sys
import time

PORT = int(sys.argv[1])
MODEL = sys.argv[2] if len(sys.argv) > 2 else "tiny-qwen3"
COMPLETION = {"model": MODEL, "prompt": list(range(100, 140)), "max_tokens": 4}


def send(conn, method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body else None,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()


def median_ms(method, path, body=None, n=300, keep_alive=True):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    times = []
    for _ in range(n):
        if not keep_alive:
            conn = http.client.HTTPConnection("127.0.0.1", PORT)
        t = time.perf_counter()
        send(conn, method, path, body)
        times.append(time.perf_counter() - t)
        if not keep_alive:
            conn.close()
    return statistics.median(times) * 1e3


for _ in range(50):
    send(http.client.HTTPConnection("127.0.0.1", PORT), "POST", "/v1/completions", COMPLETION)
print(f"keep-alive GET /metrics: {median_ms('GET', '/metrics'):.3f} ms")
print(f"keep-alive POST /v1/completions: {median_ms('POST', '/v1/completions', COMPLETION, 50):.3f} ms")
for path in ("/metrics", "/stats", "/health"):
    print(f"fresh connection GET {path}: {median_ms('GET', path, keep_alive=False):.3f} ms")
