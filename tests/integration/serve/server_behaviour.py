#!/usr/bin/env python3
"""What the client libraries cannot show of `cachet serve`, with Python's standard library:

- a client that disconnects mid-stream aborts its request, and its KV blocks are freed;
- a body over --max-body-mib is refused with 413;
- an Anthropic cache_control breakpoint pins the prompt prefix up to it;
- CLIENTS concurrent streaming clients sharing a system prompt (16 in CI; set CACHET_SERVE_CLIENTS
  for the full 64) each get a complete stream whose text equals the same request not streamed,
  and a disconnect storm of as many leaves every KV block accounted for;
- SIGTERM while a response streams ends that stream and the server exits 0.

Usage: server_behaviour.py CACHET_BIN WORK_DIR (makes the tiny model WORK_DIR/tiny-qwen3 when it
is not there). Exits 1 on a failed check.
"""
import json
import os
import signal
import socket
import sys
import threading

from serve_harness import Harness, get, post, stream_start, wait_for

h = Harness(sys.argv[1], sys.argv[2])
check, start = h.check, h.start
CLIENTS = int(os.environ.get("CACHET_SERVE_CLIENTS", "16"))


LONG = {"model": "tiny-qwen3", "prompt": "Count to a thousand:", "max_tokens": 3000,
        "temperature": 0, "ignore_eos": True, "stream": True}

proc, port = start(["--max-body-mib", "1"])
try:
    # A disconnect mid-stream: the request is aborted and its blocks go back.
    sock, first = stream_start(port, LONG)
    check("a stream starts", b"data: " in first, repr(first[:200]))
    busy = wait_for(port, lambda s: s["num_running"] == 1)
    check("the streamed request runs and holds blocks", busy["blocks_in_use"] > 0, str(busy))
    sock.close()
    after = wait_for(port, lambda s: s["num_running"] == 0 and s["blocks_in_use"] == 0)
    check("a client that disconnects mid-stream frees its blocks",
          after["num_running"] == 0 and after["blocks_in_use"] == 0, str(after))
    check("... long before its 3000 tokens", after["num_finished"] >= 1, str(after))

    # A body over the limit.
    status, _ = post(port, "/v1/completions", None, raw=b'{"prompt": "' + b"x" * (2 << 20) + b'"}')
    check("a body over --max-body-mib is a 413", status == 413, str(status))

    # cache_control: the system prompt (the breakpoint) is pinned.
    system = "You are a careful assistant. " * 20
    status, body = post(port, "/v1/messages", {
        "model": "tiny-qwen3", "max_tokens": 2,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}]})
    usage = json.loads(body).get("usage", {}) if status == 200 else {}
    check("cache_control: the request succeeds", status == 200, body[:300].decode(errors="replace"))
    check("cache_control: the pinned prefix counts as cache creation",
          usage.get("cache_creation_input_tokens", 0) > 0, str(usage))
    pinned = get(port, "/stats")[1]["blocks_pinned"]
    check("cache_control: the breakpoint's blocks are pinned", pinned > 0, str(pinned))

    # Many clients at once, sharing a system prompt: complete streams equal to the unstreamed
    # answers; then a disconnect storm.
    system = "You are a helpful assistant who answers briefly. " * 10
    def chat(i, stream):
        return {"model": "tiny-qwen3", "max_tokens": 8, "temperature": 0, "stream": stream,
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": f"Question {i}?"}]}
    want = {}
    for i in range(CLIENTS):
        status, body = post(port, "/v1/chat/completions", chat(i, False))
        want[i] = json.loads(body)["choices"][0]["message"]["content"] if status == 200 else None
    got, errors = {}, []
    def client(i):
        try:
            status, body = post(port, "/v1/chat/completions", chat(i, True))
            events = [e[6:] for e in body.decode().split("\n\n") if e.startswith("data: ")]
            if status != 200 or events[-1] != "[DONE]":
                errors.append(f"client {i}: status {status}, last event {events[-1:]}")
                return
            got[i] = "".join(json.loads(e)["choices"][0]["delta"].get("content", "")
                             for e in events[:-1] if json.loads(e).get("choices"))
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            errors.append(f"client {i}: {e}")
    def rss_mib():
        with open(f"/proc/{proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
    rss = []
    for _ in range(int(os.environ.get("CACHET_SERVE_ROUNDS", "2"))):  # rounds: the server's RSS after each (printed, not asserted)
        got.clear()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        rss.append(rss_mib())
    print(f"# server RSS after each round of {CLIENTS} clients: "
          + ", ".join(f"{r:.1f} MiB" for r in rss), flush=True)
    check(f"{CLIENTS} concurrent streams all complete", not errors and len(got) == CLIENTS,
          "; ".join(errors[:3]))
    check(f"{CLIENTS} concurrent streams equal their unstreamed answers",
          all(got.get(i) == want[i] for i in range(CLIENTS)),
          str([(i, got.get(i), want[i]) for i in range(CLIENTS) if got.get(i) != want[i]][:2]))
    hits = get(port, "/stats")[1]["prefix_cache_hit_tokens"]
    check("the shared system prompt hits the prefix cache", hits > 0, str(hits))
    socks = [stream_start(port, LONG)[0] for _ in range(CLIENTS)]
    for s_ in socks:
        s_.close()
    after = wait_for(port, lambda s: s["num_running"] == 0 and s["num_waiting"] == 0
                     and s["blocks_in_use"] == 0, 60)
    check(f"a disconnect storm of {CLIENTS} leaves every KV block accounted for",
          after["blocks_in_use"] == 0 and after["num_running"] == 0, str(after))

    # SIGTERM while a response streams: the stream ends, the server exits 0.
    sock, _ = stream_start(port, LONG)
    wait_for(port, lambda s: s["num_running"] == 1)
    proc.send_signal(signal.SIGTERM)
    sock.settimeout(30)
    rest = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except socket.timeout:
        pass
    check("SIGTERM ends a running stream with [DONE]", b"data: [DONE]" in rest, repr(rest[-200:]))
    code = proc.wait(timeout=30)
    check("SIGTERM: the server exits 0", code == 0, str(code))
finally:
    if proc.poll() is None:
        proc.kill()

h.finish()
