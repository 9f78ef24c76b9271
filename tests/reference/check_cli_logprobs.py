#!/usr/bin/env python3
"""cachet's CPU backend against an independent numpy reference (numpy_forward.py).

cachet's own model tests are circular: `cachet make-model` (the writer), the loader and the
fp64 C++ reference share the loader and the config parser, so a mistake the writer and the
reader share (a tensor name, tied embeddings, a bias, where the q/k norm goes) passes them
all. This check closes that loop with numpy_forward.py, which reads config.json and the
safetensors itself and follows Hugging Face transformers' modeling code; it shares no code
with cachet. It needs only Debian's python3 and python3-numpy (no torch, no GPU, no network).

For llama, qwen2 and qwen3, each in f32, bf16 and f16 (bf16 written as 2 shards, so the
sharded index is read too), it writes a tiny random-weight model with `cachet make-model`
(hidden 64, 2 layers, vocab 512; Llama untied with llama3 rope_scaling, Qwen2 with q/k/v
biases, Qwen2 and Qwen3 tied, Qwen3 with head_dim 32 != hidden/heads), runs
`cachet generate --device cpu --temperature 0 --ignore-eos --prompt-logprobs 5 --logprobs 5
--json` on three seeded prompts of token ids (lengths 1, 7 and 40, batched together), and
runs the reference over each prompt followed by the tokens cachet generated (teacher
forcing: one reference pass scores every position, and a legitimate near-tie divergence
does not hide the steps after it). It checks:
  (a) prompt logprobs: at every prompt position, each reported entry's logprob against the
      reference's log_softmax of that row; the reported top-5 must be the reference's top-5
      (an entry may trade places with the reference's 5th/6th only within the tolerance),
      in descending order, and the prompt token must be listed;
  (b) greedy tokens: each generated token is the reference's argmax at its step, unless the
      reference's top-1 margin there is below GREEDY_MARGIN and cachet took a token within
      that margin of the top (rounding may pick either);
  (c) generated logprobs: as (a), for the row that produced each generated token, with the
      generated token listed.

Tolerances. cachet computes in fp32 over the stored weights upcast to fp32, the reference
in fp64 over the same weights, so the only expected difference is fp32 rounding. Measured
(x86-64, 1 and 2 threads, identical): the largest |logprob error| per case is 3.8e-6 ..
6.0e-6, at top entries and listed tokens alike (logprobs from -2 to -22).
LOGPROB_TOL = 1e-4 leaves ~17x headroom for another compiler, CPU or summation order; the
smallest error any deliberate bug below caused was 0.7, four orders of magnitude above it.
(It cannot see a change as small as eps outside the sqrt of RMSNorm: 2e-5 with eps 1e-6.)
GREEDY_MARGIN = 1e-3 nats: ten times the tolerance, so a top-1 margin below it may flip
under rounding, and one above it must not.

Deliberate bugs that were seen to fail this check (exit 1), in the reference standing in
for cachet: Qwen2 q/k/v biases ignored; the embedding used as the head of an untied model;
Qwen3 q/k norm applied after RoPE; llama3 rope_scaling ignored; interleaved (GPT-J) RoPE
instead of rotate_half; GQA mapping query head i to kv head i % kv_heads; attention scale
1/sqrt(hidden/heads) instead of 1/sqrt(head_dim) (Qwen3); Gemma's (1 + w) RMSNorm; silu on
up instead of gate. In the written checkpoint, standing in for a writer bug cachet's loader
shares or tolerates: an lm_head.weight added to a tied model (cachet ignores it, the
reference rejects it), a bias the config does not have, a renamed tensor.

usage: check_cli_logprobs.py CACHET_CLI WORKDIR
Exits 0 when every check passes, 1 on any mismatch or failed command, 77 (ctest: skipped)
when numpy cannot be imported.
"""
import json
import os
import random
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
try:
    import numpy_forward as ref  # beside this file; it needs numpy
except ModuleNotFoundError as e:
    if e.name != "numpy":
        raise
    ref = None

SKIP = 77
LOGPROB_TOL = 1e-4
GREEDY_MARGIN = 1e-3
TOP_K = 5
MAX_TOKENS = 8
PROMPT_LENGTHS = (1, 7, 40)
ARCHS = ("llama", "qwen2", "qwen3")
DTYPES = ("f32", "bf16", "f16")


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def make_model(cli, out, arch, dtype, seed):
    shutil.rmtree(out, ignore_errors=True)
    shards = "2" if dtype == "bf16" else "1"
    run([cli, "make-model", "--arch", arch, "--preset", "tiny", "--dtype", dtype,
         "--seed", str(seed), "--shards", shards, "--out", out])


def generate(cli, model_dir, prompts):
    cmd = [cli, "generate", "--model", model_dir, "--device", "cpu", "--json",
           "--temperature", "0", "--ignore-eos", "--max-tokens", str(MAX_TOKENS),
           "--prompt-logprobs", str(TOP_K), "--logprobs", str(TOP_K)]
    for p in prompts:
        cmd += ["--prompt-ids", ",".join(map(str, p))]
    lines = [json.loads(line) for line in run(cmd).splitlines() if line.strip()]
    if len(lines) != len(prompts):
        raise RuntimeError(f"expected {len(prompts)} JSON lines, got {len(lines)}")
    return lines


class Case:
    """Collects the errors of one model: the largest logprob error and every mismatch."""

    def __init__(self, name):
        self.name = name
        self.max_err = 0.0
        self.failures = []
        self.near_ties = 0

    def fail(self, message):
        self.failures.append(message)

    def check_entries(self, where, entries, row, listed):
        """One reported top-k list against the reference's log_softmax row."""
        ids = [e["id"] for e in entries]
        if len(set(ids)) != len(ids):
            return self.fail(f"{where}: repeated ids {ids}")
        if listed not in ids:
            return self.fail(f"{where}: token {listed} not listed in {ids}")
        top = entries[:TOP_K]
        extra = entries[TOP_K:]
        if len(entries) not in (TOP_K, TOP_K + 1) or (extra and extra[0]["id"] != listed):
            return self.fail(f"{where}: expected the top-{TOP_K} (+ token {listed}), got {ids}")
        for e in entries:
            err = abs(e["logprob"] - row[e["id"]])
            self.max_err = max(self.max_err, err)
            if err > LOGPROB_TOL:
                self.fail(f"{where}: id {e['id']} logprob {e['logprob']:.6f}, "
                          f"reference {row[e['id']]:.6f}")
        kth = sorted(row, reverse=True)[TOP_K - 1]
        for e in top:
            if row[e["id"]] < kth - LOGPROB_TOL:
                self.fail(f"{where}: id {e['id']} is not in the reference's top-{TOP_K}")
        values = [e["logprob"] for e in top]
        if values != sorted(values, reverse=True):
            self.fail(f"{where}: top-{TOP_K} not in descending order: {values}")

    def check_greedy(self, where, token, row):
        best = max(range(len(row)), key=lambda t: (row[t], -t))
        if token == best:
            return
        second = sorted(row, reverse=True)[1]
        if row[best] - second < GREEDY_MARGIN and row[best] - row[token] < GREEDY_MARGIN:
            self.near_ties += 1
            return
        self.fail(f"{where}: generated {token} (reference logprob {row[token]:.6f}), "
                  f"reference argmax {best} ({row[best]:.6f})")

    def check_request(self, model, prompt, out):
        tag = f"prompt of {len(prompt)}"
        if out.get("finish_reason") != "length" or out.get("prompt_token_ids") != prompt:
            return self.fail(f"{tag}: bad output {json.dumps(out)[:300]}")
        generated = out["token_ids"]
        if len(generated) != MAX_TOKENS:
            return self.fail(f"{tag}: {len(generated)} tokens, expected {MAX_TOKENS}")
        rows = ref.log_softmax(model.logits(prompt + generated)).tolist()
        prompt_lps = out["prompt_logprobs"]
        if len(prompt_lps) != len(prompt) or prompt_lps[0] is not None:
            return self.fail(f"{tag}: prompt_logprobs has the wrong shape")
        for i in range(1, len(prompt)):
            self.check_entries(f"{tag} position {i}", prompt_lps[i], rows[i - 1], prompt[i])
        if len(out["logprobs"]) != MAX_TOKENS:
            return self.fail(f"{tag}: logprobs has the wrong length")
        for t, token in enumerate(generated):
            row = rows[len(prompt) - 1 + t]
            self.check_greedy(f"{tag} step {t}", token, row)
            self.check_entries(f"{tag} step {t}", out["logprobs"][t], row, token)


def run_case(cli, workdir, arch, dtype, seed):
    case = Case(f"{arch}-{dtype}")
    model_dir = os.path.join(workdir, case.name)
    make_model(cli, model_dir, arch, dtype, seed)
    model = ref.Model(model_dir)
    rng = random.Random(seed)
    prompts = [[rng.randrange(model.config.vocab) for _ in range(n)] for n in PROMPT_LENGTHS]
    for prompt, out in zip(prompts, generate(cli, model_dir, prompts)):
        case.check_request(model, prompt, out)
    return case


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    if ref is None:
        print(f"skipped: numpy is not importable by {sys.executable}")
        return SKIP
    cli, workdir = argv[1], argv[2]
    os.makedirs(workdir, exist_ok=True)
    failed = False
    seed = 1000
    for arch in ARCHS:
        for dtype in DTYPES:
            seed += 1
            try:
                case = run_case(cli, workdir, arch, dtype, seed)
            except Exception as e:  # a failed command or an unreadable model fails the case
                print(f"{arch}-{dtype}: FAIL: {e}")
                failed = True
                continue
            status = "ok" if not case.failures else f"FAIL ({len(case.failures)} mismatches)"
            print(f"{case.name}: max |logprob error| {case.max_err:.2e} "
                  f"(tolerance {LOGPROB_TOL:g}), near-tie greedy picks {case.near_ties}: {status}")
            for message in case.failures[:10]:
                print(f"  {message}")
            failed = failed or bool(case.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
