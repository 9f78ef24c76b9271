"""What the Python tests of `cachet serve` share, with the standard library only: the tiny
model, starting a server on a free port, requests, and TAP-like checks.

Usage from a test: `h = Harness(sys.argv[1], sys.argv[2])` (CACHET_BIN, WORK_DIR); the tiny
model WORK_DIR/tiny-qwen3 is made when it is not there.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import time


class Harness:
    def __init__(self, cachet, work):
        self.cachet, self.work = cachet, work
        self.model_dir = os.path.join(work, "tiny-qwen3")
        self.failures = []
        os.makedirs(work, exist_ok=True)
        if not os.path.exists(os.path.join(self.model_dir, "config.json")):
            here = os.path.dirname(os.path.abspath(__file__))
            tok = os.path.join(here, "..", "..", "data", "tokenizers", "qwen3")
            subprocess.run([cachet, "make-model", "--arch", "qwen3", "--preset", "tiny",
                            "--seed", "7", "--tokenizer", tok, "--out", self.model_dir],
                           check=True, stdout=subprocess.DEVNULL)

    def check(self, name, ok, why=""):
        print(("ok - " if ok else "not ok - ") + name + ("" if ok else ": " + why), flush=True)
        if not ok:
            self.failures.append(name)

    def finish(self):
        print(f"# {len(self.failures)} failed", flush=True)
        sys.exit(1 if self.failures else 0)

    def start(self, extra=()):
        """Starts `cachet serve` on the tiny model; returns (process, port) once /health is 200."""
        port = free_port()
        log = open(os.path.join(self.work, f"server-{port}.log"), "w")
        proc = subprocess.Popen([self.cachet, "serve", "--model", self.model_dir, "--port",
                                 str(port), "--device", "cpu", "--threads", "1",
                                 "--block-size", "4", *extra],
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if get(port, "/health")[0] == 200:
                    return proc, port
            except OSError:
                time.sleep(0.2)
            if proc.poll() is not None:
                break
        proc.kill()
        sys.exit(f"server did not come up; see {log.name}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get_raw(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    return r.status, r.getheader("Content-Type"), r.read()


def get(port, path, headers=None):
    status, _, body = get_raw(port, path, headers)
    return status, json.loads(body or b"null")


def post(port, path, body, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    data = raw if raw is not None else json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def stream_start(port, body):
    """Sends a streaming completion and reads its first event; returns the open socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    got = b""
    while b"data: " not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return s, got


def wait_for(port, cond, seconds=30):
    """Polls /stats until cond(stats) holds (or `seconds` pass); returns the last stats."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        stats = get(port, "/stats")[1]
        if cond(stats):
            return stats
        time.sleep(0.1)
    return get(port, "/stats")[1]
