#!/usr/bin/env python3
"""Parity of cachet's CUDA backend with Hugging Face transformers.

For Llama, Qwen2 and Qwen3: builds a random-weight model with transformers, saves it with
save_pretrained (safetensors, bf16), runs `cachet generate` on it with the CPU backend
(fp32) and the CUDA backend (bf16), and compares both with transformers computing in fp32
over the same bf16 weights (the reference) and in bf16 (the yardstick for bf16 error):
  - prompt logprobs at every position, cachet's top-5 entries against the reference's
    log_softmax of the same row: the CPU within 2e-3; the GPU no further from the reference
    than 1.5x transformers' own bf16 run is (and at least 0.05 is allowed);
  - 32 greedy tokens: identical to the reference's up to the first step where its top-1
    margin is below the noise of the precision (0.01 nats for the CPU; for the GPU twice
    the worst bf16 logprob error, at least 0.1), where rounding may pick the runner-up.

usage: hf_parity.py CACHET_CLI WORKDIR
Exits 77 (ctest: skipped) when torch, transformers or a CUDA device is missing, 1 on a
mismatch, 0 when every check passes.
"""
import json
import os
import subprocess
import sys

SKIP = 77


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    cli, workdir = sys.argv[1], sys.argv[2]
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"skipped: {e}")
        return SKIP
    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device")
        return SKIP
    from transformers import AutoModelForCausalLM

    cases = {
        "llama": transformers.LlamaConfig(
            vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
            rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 1024},
            bos_token_id=1, eos_token_id=2),
        "qwen2": transformers.Qwen2Config(
            vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
            bos_token_id=1, eos_token_id=2),
        "qwen3": transformers.Qwen3Config(
            vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=2, head_dim=128,
            max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0,
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
    }
    failures = []
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    for name, config in cases.items():
        config.initializer_range = 0.05
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
        with torch.no_grad():
            # Default init gives near-uniform logits; a larger output scale gives the clear
            # top-1 margins greedy comparisons need.
            model.get_output_embeddings().weight.mul_(8.0)
        out_dir = os.path.join(workdir, f"hf-{name}")
        model.save_pretrained(out_dir, safe_serialization=True)
        model_bf16 = model.cuda().eval()
        model = AutoModelForCausalLM.from_pretrained(out_dir, torch_dtype=torch.float32)
        model = model.cuda().eval()

        prompts = [torch.randint(3, config.vocab_size, (n,), generator=gen).tolist()
                   for n in (7, 40, 333)]
        refs = []
        bf16_worst = 0.0
        for ids in prompts:
            with torch.no_grad():
                x = torch.tensor([ids], device="cuda")
                ref_lp = torch.log_softmax(model(x).logits[0].float(), dim=-1)
                bf_lp = torch.log_softmax(model_bf16(x).logits[0].float(), dim=-1)
                top = torch.topk(ref_lp, 5, dim=-1).indices
                bf16_worst = max(bf16_worst, float(
                    (ref_lp.gather(1, top) - bf_lp.gather(1, top)).abs().max()))
                out = model.generate(x, max_new_tokens=32, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True, eos_token_id=None,
                                     pad_token_id=0, min_new_tokens=32)
            margins = []
            for sc in out.scores:
                t2 = torch.topk(sc[0].float(), 2).values
                margins.append(float(t2[0] - t2[1]))
            refs.append((ref_lp.cpu(), out.sequences[0, len(ids):].tolist(), margins))
        print(f"{name}: transformers bf16 vs fp32, worst top-5 prompt logprob delta "
              f"{bf16_worst:.4f}")

        for device in ("cpu", "cuda"):
            lp_tol = 2e-3 if device == "cpu" else max(0.05, 1.5 * bf16_worst)
            tie = 0.01 if device == "cpu" else max(0.1, 2 * bf16_worst)
            worst_lp, worst_case = 0.0, ""
            for pi, ids in enumerate(prompts):
                ref_lp, hf_tokens, margins = refs[pi]
                cmd = [cli, "generate", "--model", out_dir, "--device", device, "--json",
                       "--prompt-ids", ",".join(map(str, ids)), "--max-tokens", "32",
                       "--temperature", "0", "--ignore-eos", "--prompt-logprobs", "5",
                       "--logprobs", "1", "--max-model-len", "4096"]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    failures.append(f"{name} {device}: cachet failed: {res.stderr.strip()}")
                    continue
                got = json.loads(res.stdout.strip().splitlines()[0])
                for t, entry in enumerate(got["prompt_logprobs"]):
                    if entry is None:
                        continue
                    for e in entry:
                        d = abs(e["logprob"] - float(ref_lp[t - 1, e["id"]]))
                        if d > worst_lp:
                            worst_lp, worst_case = d, f"prompt {pi} position {t} id {e['id']}"
                ours = got["token_ids"]
                first_diff = next(
                    (i for i, (a, b) in enumerate(zip(ours, hf_tokens)) if a != b), None)
                if first_diff is not None and margins[first_diff] >= tie:
                    failures.append(
                        f"{name} {device}: prompt {pi}: greedy token {first_diff} is "
                        f"{ours[first_diff]}, transformers {hf_tokens[first_diff]} (margin "
                        f"{margins[first_diff]:.3f} nats >= {tie:.3f})")
                agree = len(ours) if first_diff is None else first_diff
                print(f"{name} {device} prompt {pi} ({len(ids)} tokens): greedy agrees for "
                      f"{agree}/32 tokens; min reference margin {min(margins):.3f}")
            print(f"{name} {device}: worst prompt logprob |delta| vs transformers fp32: "
                  f"{worst_lp:.4f} ({worst_case}); allowed {lp_tol:.4f}")
            if worst_lp > lp_tol:
                failures.append(f"{name} {device}: prompt logprob off by {worst_lp:.4f} at "
                                f"{worst_case} (allowed {lp_tol:.4f})")
    for f in failures:
        print("FAIL:", f)
    print("transformers", transformers.__version__, "torch", torch.__version__)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
