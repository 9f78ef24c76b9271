#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*).

Deterministic: running it again gives the same files. Inputs that libFuzzer found and that
became regression cases are kept next to the seeds as crash-* / finding-* files; this
script leaves those alone. Usage: python3 tests/fuzz/make_seeds.py
"""
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "tokenizers")
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- safetensors ---------------------------------------------------------------------
def safetensors(header, payload, pad=True):
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def st_seeds():
    f32 = struct.pack("<4f", 1, 2, 3, 4)
    put("safetensors", "f32", safetensors(
        {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, f32))
    put("safetensors", "mixed", safetensors({
        "a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
        "b": {"dtype": "F16", "shape": [1, 1], "data_offsets": [6, 8]},
        "s": {"dtype": "F32", "shape": [], "data_offsets": [8, 12]},
        "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [12, 12]}}, bytes(range(12))))
    put("safetensors", "empty-header", safetensors({}, b""))
    put("safetensors", "unpadded", safetensors(
        {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, f32[:4], pad=False))
    put("safetensors", "overlap", safetensors({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32))
    put("safetensors", "unsupported-dtype", safetensors(
        {"i": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, f32))
    put("safetensors", "bad-offsets", safetensors(
        {"r": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, f32))
    put("safetensors", "past-end", safetensors(
        {"p": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, f32))
    put("safetensors", "huge-shape", safetensors(
        {"h": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}, f32))
    put("safetensors", "header-too-big", struct.pack("<Q", 1 << 40) + b"{}")
    put("safetensors", "truncated", safetensors(
        {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, f32)[:20])
    put("safetensors", "not-object", safetensors([1, 2, 3], b""))


# --- model.safetensors.index.json ----------------------------------------------------
def index_seeds():
    full = {"a": "shard-a.safetensors", "b": "shard-a.safetensors",
            "c": "shard-b.safetensors", "d": "shard-b.safetensors"}
    put("weight_index", "full", json.dumps({"metadata": {"total_size": 44}, "weight_map": full}, indent=2))
    put("weight_index", "partial", json.dumps({"weight_map": {"a": "shard-a.safetensors"}}))
    put("weight_index", "wrong-shard", json.dumps({"weight_map": {"c": "shard-a.safetensors"}}))
    put("weight_index", "missing-shard", json.dumps({"weight_map": {"a": "shard-z.safetensors"}}))
    put("weight_index", "traversal", json.dumps({"weight_map": {"secret": "../outside.safetensors"}}))
    put("weight_index", "dot-path", json.dumps({"weight_map": {"a": "./sub/../shard-a.safetensors"}}))
    put("weight_index", "not-string", json.dumps({"weight_map": {"a": 3}}))
    put("weight_index", "no-map", json.dumps({"metadata": {}}))


# --- config.json ---------------------------------------------------------------------
def config_seeds():
    llama = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "tie_word_embeddings": True, "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16"}
    qwen2 = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu",
        "use_sliding_window": False, "sliding_window": 32768, "torch_dtype": "bfloat16"}
    qwen3 = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936,
        "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
        "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": False,
        "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
        "torch_dtype": "bfloat16"}
    tiny = {"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    put("model_config", "llama-3.2-1b", json.dumps(llama, indent=2))
    put("model_config", "qwen2.5-0.5b", json.dumps(qwen2, indent=2))
    put("model_config", "qwen3-0.6b", json.dumps(qwen3, indent=2))
    put("model_config", "tiny-minimal", json.dumps(tiny))
    put("model_config", "gqa-mismatch", json.dumps(dict(tiny, num_key_value_heads=3)))
    put("model_config", "sliding", json.dumps(dict(qwen2, use_sliding_window=True)))
    put("model_config", "mistral", json.dumps(dict(tiny, architectures=["MistralForCausalLM"])))
    put("model_config", "not-object", "[1, 2]")


# --- tokenizer.json ------------------------------------------------------------------
def trimmed_tokenizer(family, keep):
    with open(os.path.join(DATA, family, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    model = tok["model"]
    vocab = {t: i for t, i in model["vocab"].items() if i < keep}
    merges = []
    for m in model.get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and (a + b) in vocab:
            merges.append(m)
    model["vocab"] = vocab
    model["merges"] = merges
    return json.dumps(tok, ensure_ascii=False, separators=(",", ":"))


def tokenizer_seeds():
    for family in ["qwen3", "gpt2_style", "llama3_style", "llama2_style", "mistral_style",
                   "components_a", "components_b"]:
        put("tokenizer_json", family, trimmed_tokenizer(family, 320))
    minimal = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
               "post_processor": None, "decoder": None,
               "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
    put("tokenizer_json", "minimal", json.dumps(minimal))
    put("tokenizer_json", "wordpiece", json.dumps(dict(minimal, model={"type": "WordPiece", "vocab": {}})))


# --- Tokenizer::encode ---------------------------------------------------------------
def encode_seeds():
    texts = []
    with open(os.path.join(DATA, "public_corpus.jsonl"), encoding="utf-8") as f:
        texts += [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(DATA, "qwen3", "hostile_cases.jsonl"), encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f if line.strip()]
    for i, text in enumerate(texts):
        options = (i % 7) | ((i // 7) % 4) << 4  # family, add_special, skip_special
        put("tokenizer_encode", "%03d" % i, bytes([options]) + text.encode("utf-8"))
    rng = random.Random(5)
    for i in range(14):  # invalid UTF-8
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 48)))
        put("tokenizer_encode", "bytes-%02d" % i, bytes([i % 7]) + raw)


# --- block manager -------------------------------------------------------------------
def block_manager_seeds():
    rng = random.Random(11)
    for i in range(24):
        n = rng.choice([16, 64, 256, 1024, 4096])
        put("block_manager", "%02d" % i, bytes(rng.randrange(256) for _ in range(n)))


if __name__ == "__main__":
    st_seeds()
    index_seeds()
    config_seeds()
    tokenizer_seeds()
    encode_seeds()
    block_manager_seeds()
