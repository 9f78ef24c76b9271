// Shared helpers of the client-library tests (openai_client.test.mjs, anthropic_client.test.mjs):
// a sequential check runner printing "ok - NAME" / "not ok - NAME: WHY" / "skip - NAME: WHY",
// assertions, a raw HTTP helper (for what the SDKs cannot send: malformed JSON, no auth header)
// and the texts the tests send. Only Node.js built-ins: it runs on Node.js 18 and later.
import http from "node:http";

// Thrown by a check to report a skip instead of a pass or failure.
export class Skip extends Error {}

function oneLine(text) {
  return String(text).replace(/\s*\n\s*/g, " | ").slice(0, 600);
}

// One line saying what went wrong: the SDKs' APIError subclasses carry a status.
export function describeError(err) {
  if (err === null || typeof err !== "object") return oneLine(String(err));
  const name = err.constructor?.name ?? "Error";
  const status = err.status !== undefined ? ` (status ${err.status})` : "";
  const cause = err.cause ? ` [cause: ${err.cause.message ?? err.cause}]` : "";
  return oneLine(`${name}${status}: ${err.message}${cause}`);
}

export function show(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

export function expect(condition, message) {
  if (!condition) throw new Error(message);
}

export function expectEq(actual, expected, what) {
  if (actual !== expected) {
    throw new Error(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

export function expectNumber(value, what) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new Error(`${what}: expected a number, got ${show(value)}`);
  }
}

export function expectInteger(value, what, { min = 0 } = {}) {
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${what}: expected an integer >= ${min}, got ${show(value)}`);
  }
}

export function expectString(value, what) {
  if (typeof value !== "string") throw new Error(`${what}: expected a string, got ${show(value)}`);
}

// Awaits `promise`, which must reject with an instance of `ErrorClass` of HTTP status `status`;
// returns the error for further checks.
export async function expectApiError(promise, ErrorClass, status) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    if (!(err instanceof ErrorClass)) {
      throw new Error(`expected ${ErrorClass.name} (${status}), got ${describeError(err)}`);
    }
    expectEq(err.status, status, "HTTP status");
    return err;
  }
  throw new Error(`expected ${ErrorClass.name} (${status}), got a response: ${show(result)}`);
}

// Runs checks one after another; each one that throws is a failure, and the others still run.
export class Checks {
  constructor() {
    this.passed = 0;
    this.failed = 0;
    this.skipped = 0;
  }

  async run(name, fn, { timeoutMs = 120000 } = {}) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([Promise.resolve().then(fn), timeout]);
      this.passed++;
      console.log(`ok - ${name}`);
    } catch (err) {
      if (err instanceof Skip) {
        this.skipped++;
        console.log(`skip - ${name}: ${oneLine(err.message)}`);
      } else {
        this.failed++;
        console.log(`not ok - ${name}: ${describeError(err)}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  // Prints the tally and exits (an abandoned timed-out request must not keep the process alive).
  finish() {
    const skipped = this.skipped ? `, ${this.skipped} skipped` : "";
    console.log(`# ${this.passed} passed, ${this.failed} failed${skipped}`);
    process.exit(this.failed > 0 ? 1 : 0);
  }
}

// BASE_URL MODEL [API_KEY] from the command line.
export function parseArgs(script) {
  const [baseUrl, model, apiKey] = process.argv.slice(2);
  if (!baseUrl || !model) {
    console.error(`usage: node ${script} BASE_URL MODEL [API_KEY]`);
    process.exit(2);
  }
  return { baseUrl: baseUrl.replace(/\/+$/, ""), model, apiKey: apiKey || undefined };
}

// A plain HTTP/1.1 request with node:http (no fetch: Node 18's prints an experimental warning).
// `body` is sent as is when a string, as JSON otherwise. Resolves to {status, headers, text, json}
// (json undefined when the body does not parse).
export function rawRequest(baseUrl, method, path, { headers = {}, body, timeoutMs = 60000 } = {}) {
  const url = new URL(baseUrl + path);
  const payload =
    body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  const allHeaders = { ...headers };
  if (payload !== undefined) {
    allHeaders["content-type"] ??= "application/json";
    allHeaders["content-length"] = Buffer.byteLength(payload);
  }
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method, headers: allHeaders, agent: false, timeout: timeoutMs },
      (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

// A stop string taken from the middle of `text`: 3 code points (or fewer when the text is short)
// starting near code point 5, without U+FFFD (a character a tokenizer's byte fallback may
// render for an incomplete sequence) and not all whitespace. Null when the text has none.
export function pickStopString(text) {
  const chars = Array.from(text); // code points: never splits a surrogate pair
  const usable = (s) => s.length > 0 && !s.includes("\ufffd") && s.trim().length > 0;
  for (const length of [3, 2, 1]) {
    const starts = [5, 4, 6, 3, 7, 2, 8, 1];
    for (let start = 9; start < chars.length; start++) starts.push(start);
    for (const start of starts) {
      if (start + length > chars.length) continue;
      const candidate = chars.slice(start, start + length).join("");
      if (usable(candidate)) return candidate;
    }
  }
  return null;
}

// About 200 words of system prompt, the same on every run: long enough to fill many 4-token
// KV blocks, so a second request that shares it must hit the prefix cache.
export function longSystemPrompt() {
  const words = [
    "cache", "block", "token", "prefix", "attention", "layer", "kernel", "memory", "request",
    "batch", "schedule", "decode", "prefill", "sample", "vector", "matrix", "tensor", "engine",
    "stream", "server", "client", "model", "weight", "buffer", "thread", "queue", "latency",
    "throughput", "budget", "policy", "evict", "reuse", "hash", "chain", "salt", "tier",
  ];
  const sentences = [];
  for (let s = 0; s < 20; s++) {
    const sentence = [];
    for (let w = 0; w < 10; w++) sentence.push(words[(s * 7 + w * 11) % words.length]);
    sentences.push(`Rule ${s + 1}: ${sentence.join(" ")}.`);
  }
  return `You are a careful assistant. Follow these rules. ${sentences.join(" ")}`;
}

// A string unique to this process, for cache salts that no earlier run used.
export function uniqueSuffix() {
  return `${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
}
