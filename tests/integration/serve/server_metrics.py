#!/usr/bin/env python3
"""`cachet serve`'s GET /metrics, read with the official Prometheus Python client's parser
(Debian's python3-prometheus-client) and checked against the requests this test sends:

- every metric docs/serve.md lists is exposed, and no other;
- finished requests by reason, prompt and generated tokens and the latency histograms' counts
  equal what the requests were (token-id prompts, ignore_eos: exact counts), with n=2 and a
  client that disconnects (aborted) included;
- why each request's cached prefix ended, counted by reason and sent with each choice;
- the prefix cache's queries and hits equal /stats and the responses' cached_tokens, and the
  prompt tokens by source add up to the queries;
- the device tier's blocks by state add up to its capacity;
- with a host and a disk tier, evictions, transfers between tiers and host-tier hits equal
  /stats;
- with --api-key, /metrics needs the key.

Usage: server_metrics.py CACHET_BIN WORK_DIR. Exits 1 on a failed check.
"""
import json
import os
import re
import shutil
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

from serve_harness import Harness, get, get_raw, post, stream_start, wait_for

h = Harness(sys.argv[1], sys.argv[2])
check = h.check
HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, "..", "..", "..", "docs", "serve.md")


def scrape(port, headers=None):
    """{(sample name, ((label, value), ...)): value} and the set of metric names."""
    status, ctype, body = get_raw(port, "/metrics", headers)
    if status != 200:
        return status, ctype, {}, set()
    samples, names = {}, set()
    for fam in text_string_to_metric_families(body.decode()):
        names.add(fam.name + ("_total" if fam.type == "counter" else ""))
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return status, ctype, samples, names


def val(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), None)


def complete(port, ids, n=1, max_tokens=5):
    status, body = post(port, "/v1/completions", {
        "model": "tiny-qwen3", "prompt": ids, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "n": n, "seed": 1})
    return status, json.loads(body) if status == 200 else body


def documented_metrics():
    with open(DOCS) as f:
        text = f.read()
    section = text[text.index("## Metrics"):]
    section = section[:section.index("\n## ", 4)] if "\n## " in section[4:] else section
    return set(re.findall(r"^\| `(cachet:[a-z0-9_]+)`", section, re.M))


proc, port = h.start()
try:
    status, ctype, s0, names = scrape(port)
    check("/metrics answers 200 in the text format", status == 200 and
          ctype.startswith("text/plain"), f"{status} {ctype}")
    docs = documented_metrics()
    check("every metric docs/serve.md lists is exposed, and no other", names == docs,
          f"undocumented {sorted(names - docs)}, missing {sorted(docs - names)}")
    check("no request finished yet",
          val(s0, "cachet:requests_finished_total", finished_reason="length") == 0.0, str(s0)[:300])

    # Three requests: a 12-token prompt twice (the second hits the cache), a 9-token one.
    p1, p2 = list(range(100, 112)), list(range(300, 309))
    usages, bodies = [], []
    for ids in (p1, p1, p2):
        status, body = complete(port, ids)
        check(f"a {len(ids)}-token completion succeeds", status == 200, str(body)[:200])
        usages.append(body["usage"] if status == 200 else {})
        bodies.append(body if status == 200 else {})
    _, _, s1, _ = scrape(port)
    stats = get(port, "/stats")[1]
    check("3 requests finished by length",
          val(s1, "cachet:requests_finished_total", finished_reason="length") == 3, str(s1)[:200])
    check("prompt tokens: 12 + 12 + 9", val(s1, "cachet:prompt_tokens_total") == 33)
    check("generation tokens: 3 x 5", val(s1, "cachet:generation_tokens_total") == 15)
    for hist in ("time_to_first_token", "e2e_request_latency", "request_queue_time"):
        n = val(s1, f"cachet:{hist}_seconds_count")
        check(f"{hist}: one observation per request", n == 3, str(n))
    itl = val(s1, "cachet:inter_token_latency_seconds_count")
    check("inter-token latency: 4 gaps per 5-token answer", itl == 12, str(itl))
    ttft_sum = val(s1, "cachet:time_to_first_token_seconds_sum")
    e2e_sum = val(s1, "cachet:e2e_request_latency_seconds_sum")
    check("latencies are positive and e2e >= ttft", 0 < ttft_sum <= e2e_sum, f"{ttft_sum} {e2e_sum}")
    inf = val(s1, "cachet:time_to_first_token_seconds_bucket", le="+Inf")
    check("the +Inf bucket holds every observation", inf == 3, str(inf))
    misses = {r: val(s1, "cachet:prefix_cache_misses_total", reason=r)
              for r in ("none", "cold", "prefix_end", "evicted", "other_salt", "diverged")}
    check("miss reasons: two cold prompts, one full hit", misses["cold"] == 2 and
          misses["none"] == 1 and sum(misses.values()) == 3, str(misses))
    check("each choice says why its cached prefix ended (the repeat: none, at token 11: "
          "two blocks and 3 tokens of the third)",
          [b.get("choices", [{}])[0].get("cache_miss") for b in bodies] ==
          [{"reason": "cold", "at": 0}, {"reason": "none", "at": 11}, {"reason": "cold", "at": 0}],
          str([b.get("choices", [{}])[0].get("cache_miss") for b in bodies]))
    cached = sum(u.get("prompt_tokens_details", {}).get("cached_tokens", 0) for u in usages)
    queries = val(s1, "cachet:prefix_cache_queries_total")
    hits = val(s1, "cachet:prefix_cache_hits_total")
    check("prefix cache queries equal /stats and the prompts", queries == 33 and
          queries == stats["prefix_cache_query_tokens"], f"{queries} {stats}")
    check("prefix cache hits equal the responses' cached_tokens (> 0: the repeat hit)",
          hits == cached and cached > 0, f"{hits} {cached}")
    by_source = {src: val(s1, "cachet:prompt_tokens_by_source_total", source=src)
                 for src in ("computed", "device", "host", "disk")}
    check("prompt tokens by source add up to the queries; computed = queries - hits",
          sum(by_source.values()) == queries and by_source["computed"] == queries - hits,
          str(by_source))
    device = {st: val(s1, "cachet:kv_blocks", tier="device", state=st)
              for st in ("free", "cached", "in_use")}
    cap = val(s1, "cachet:kv_blocks_capacity", tier="device")
    check("device blocks by state add up to the capacity; none in use when idle",
          sum(device.values()) == cap and device["in_use"] == 0 and device["cached"] > 0,
          f"{device} {cap}")
    check("nothing runs or waits; the engine is healthy",
          val(s1, "cachet:num_requests_running") == 0 and
          val(s1, "cachet:num_requests_waiting") == 0 and val(s1, "cachet:engine_healthy") == 1)

    # n=2: two samples finish, one prompt counted.
    status, body = complete(port, list(range(500, 507)), n=2)
    check("an n=2 completion succeeds", status == 200, str(body)[:200])
    _, _, s2, _ = scrape(port)
    check("n=2: two more finished by length",
          val(s2, "cachet:requests_finished_total", finished_reason="length") == 5)
    check("n=2: its prompt counts once", val(s2, "cachet:prompt_tokens_total") == 40)
    check("n=2: both samples' tokens count", val(s2, "cachet:generation_tokens_total") == 25)
    check("n=2: a TTFT per sample", val(s2, "cachet:time_to_first_token_seconds_count") == 5)

    # A client that goes away mid-stream: aborted.
    sock, first = stream_start(port, {"model": "tiny-qwen3", "prompt": list(range(700, 706)),
                                      "max_tokens": 3000, "temperature": 0, "ignore_eos": True,
                                      "stream": True})
    wait_for(port, lambda st: st["num_running"] == 1)
    sock.close()
    deadline, s3 = time.time() + 30, {}
    while time.time() < deadline:
        _, _, s3, _ = scrape(port)
        if val(s3, "cachet:requests_finished_total", finished_reason="abort") == 1:
            break
        time.sleep(0.1)
    check("a disconnected stream counts as aborted",
          val(s3, "cachet:requests_finished_total", finished_reason="abort") == 1)
    check("... with its 6 prompt tokens", val(s3, "cachet:prompt_tokens_total") == 46)
    check("... and the tokens it generated", val(s3, "cachet:generation_tokens_total") > 25)
finally:
    proc.kill()
    proc.wait()

# The tiers: a device cache of 8 blocks, a host tier and a disk tier. Three 16-token prompts
# evict each other's blocks to the host tier; the first again loads them back.
kv_dir = os.path.join(h.work, "kv-dir")
shutil.rmtree(kv_dir, ignore_errors=True)  # records of an earlier run would be read, not written
proc, port = h.start(["--num-kv-blocks", "8", "--host-kv-cache-mib", "4", "--kv-cache-dir", kv_dir])
try:
    prompts = [list(range(1000 + 100 * i, 1016 + 100 * i)) for i in range(3)]
    for ids in prompts + prompts[:1]:
        status, body = complete(port, ids)
        check("a completion with the tiers on succeeds", status == 200, str(body)[:200])
    deadline = time.time() + 30
    while time.time() < deadline:  # the disk tier's writes land on its own thread
        _, _, s4, _ = scrape(port)
        if val(s4, "cachet:kv_tier_transfers_total", direction="host_to_disk") > 0:
            break
        time.sleep(0.1)
    stats = get(port, "/stats")[1]
    def moved(d):
        return val(s4, "cachet:kv_tier_transfers_total", direction=d)
    check("tiers: the device tier evicted", val(s4, "cachet:kv_evictions_total", tier="device")
          == stats["evictions"] > 0, str(stats))
    check("tiers: evicted blocks went to the host tier and came back",
          moved("device_to_host") > 0 and moved("host_to_device") > 0,
          f"{moved('device_to_host')} {moved('host_to_device')}")
    check("tiers: the disk tier wrote them", moved("host_to_disk") > 0)
    host = val(s4, "cachet:prompt_tokens_by_source_total", source="host")
    check("tiers: prompt tokens from the host tier equal /stats (> 0)",
          host == stats["prefix_cache_host_hit_tokens"] > 0, f"{host} {stats}")
    sources = sum(val(s4, "cachet:prompt_tokens_by_source_total", source=src)
                  for src in ("computed", "device", "host", "disk"))
    check("tiers: the sources add up to the queries",
          sources == val(s4, "cachet:prefix_cache_queries_total") == 64, str(sources))
    check("tiers: host blocks used equal /stats",
          val(s4, "cachet:kv_blocks", tier="host", state="used") == stats["host_blocks_used"] > 0)
    check("tiers: the device capacity is 8 blocks",
          val(s4, "cachet:kv_blocks_capacity", tier="device") == 8)
finally:
    proc.kill()
    proc.wait()

proc, port = h.start(["--api-key", "sekrit"])
try:
    status = get_raw(port, "/metrics")[0]
    check("with --api-key, /metrics without the key is 401", status == 401, str(status))
    status = get_raw(port, "/metrics", {"Authorization": "Bearer sekrit"})[0]
    check("... and 200 with it", status == 200, str(status))
finally:
    proc.kill()
    proc.wait()
h.finish()
