#!/usr/bin/env python3
"""An independent float64 forward pass for Llama, Qwen2 and Qwen3 checkpoints, in numpy.

It reads a Hugging Face model directory by itself (config.json; model.safetensors or a
sharded model.safetensors.index.json; tensors in F32, F16 or BF16) and computes the logits
the way Hugging Face transformers' modeling code does for LlamaForCausalLM,
Qwen2ForCausalLM and Qwen3ForCausalLM:

  x = embed_tokens[ids]
  per layer:
    h = RMSNorm(x, input_layernorm)           RMSNorm(x, w) = x / sqrt(mean(x^2) + eps) * w
    q, k, v = h @ Wq.T (+bq), h @ Wk.T (+bk), h @ Wv.T (+bv)
                                              biases: Qwen2 always on q/k/v; Llama and
                                              Qwen3 when attention_bias (then o_proj too)
    split into heads of head_dim              config head_dim, else hidden / heads
    Qwen3 only: q, k = RMSNorm per head (q_norm, k_norm), BEFORE RoPE
    q, k = RoPE(q), RoPE(k)                   rotate_half convention (first half / second
                                              half of each head), inv_freq =
                                              1 / theta^(arange(0, d, 2) / d), rope_scaling
                                              type llama3 adjusts inv_freq
    k, v repeated to the query heads (GQA: query head i uses kv head i // group)
    o = softmax(q k^T / sqrt(head_dim) + causal mask) v, heads concatenated, @ Wo.T
    x = x + o
    x = x + down(silu(gate(h2)) * up(h2)),    h2 = RMSNorm(x, post_attention_layernorm)
  logits = RMSNorm(x, model.norm) @ lm_head.T, lm_head = embed_tokens when
                                              tie_word_embeddings (lm_head.weight absent)

Everything is float64 over the stored weights (bf16/f16/f32 converted exactly).

Why it is independent: it shares no code with cachet (no import, no shared config parser
or safetensors loader) and was written from the Hugging Face conventions, not from cachet's
source. It is strict where a mistake shared by a writer and a reader would otherwise hide:
every tensor it expects must be present with the shape Hugging Face would give it, and
every tensor in the checkpoint must be used (an untied lm_head.weight next to
tie_word_embeddings=true, a bias the architecture does not have, a misspelt name all fail).

usage: numpy_forward.py MODEL_DIR 1,2,3 [--greedy N]
prints the top-5 log-probabilities of the next token after the prompt and, with --greedy,
the N greedy tokens.
"""
import json
import math
import os
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------- safetensors

_DTYPES = {"F32": (np.dtype("<f4"), 4), "F16": (np.dtype("<f2"), 2), "BF16": (None, 2)}


def _decode(raw, dtype):
    """Bytes of one tensor -> a float64 array (flat)."""
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    return np.frombuffer(raw, dtype=_DTYPES[dtype][0]).astype(np.float64)


def read_safetensors(path):
    """One .safetensors file -> {name: float64 array}."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = blob[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info["dtype"], info["shape"]
        if dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        begin, end = info["data_offsets"]
        if end - begin != math.prod(shape) * _DTYPES[dtype][1] or end > len(data):
            raise ValueError(f"{path}: tensor {name}: data_offsets do not match its shape")
        tensors[name] = _decode(data[begin:end], dtype).reshape(shape)
    return tensors


def read_checkpoint(model_dir):
    """All tensors of a model directory, single-file or sharded."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if not os.path.exists(index_path):
        return read_safetensors(os.path.join(model_dir, "model.safetensors"))
    with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        for name, array in read_safetensors(os.path.join(model_dir, shard)).items():
            if weight_map.get(name) != shard:
                raise ValueError(f"{shard}: tensor {name} is not mapped to this shard")
            tensors[name] = array
    missing = set(weight_map) - set(tensors)
    if missing:
        raise ValueError(f"index names tensors no shard holds: {sorted(missing)[:5]}")
    return tensors


# ---------------------------------------------------------------------------- config

ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


class Config:
    """The fields of config.json the forward pass uses, with transformers' defaults."""

    def __init__(self, cfg):
        arch = cfg.get("architectures", [None])[0]
        if arch not in ARCHITECTURES:
            raise ValueError(f"unsupported architecture {arch}")
        self.arch = arch
        self.vocab = cfg["vocab_size"]
        self.hidden = cfg["hidden_size"]
        self.intermediate = cfg["intermediate_size"]
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads") or self.heads
        # Qwen3Config's head_dim defaults to 128; the others derive it.
        default_head_dim = 128 if arch == "Qwen3ForCausalLM" else self.hidden // self.heads
        self.head_dim = cfg.get("head_dim") or default_head_dim
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.rope_scaling = cfg.get("rope_scaling")
        self.tied = cfg.get("tie_word_embeddings", False)
        # Qwen2 always has q/k/v biases; Llama and Qwen3 have q/k/v/o biases when asked.
        self.qkv_bias = arch == "Qwen2ForCausalLM" or cfg.get("attention_bias", False)
        self.o_bias = arch != "Qwen2ForCausalLM" and cfg.get("attention_bias", False)
        self.mlp_bias = arch == "LlamaForCausalLM" and cfg.get("mlp_bias", False)
        self.qk_norm = arch == "Qwen3ForCausalLM"
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {cfg['hidden_act']}")
        if cfg.get("use_sliding_window", False):
            raise ValueError("sliding-window attention is not implemented here")
        if self.heads % self.kv_heads:
            raise ValueError("num_attention_heads is not a multiple of num_key_value_heads")


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return Config(json.load(f))


# ---------------------------------------------------------------------------- weights

def expected_shapes(c):
    """{tensor name: shape} of the checkpoint Hugging Face would load for this config."""
    q_out, kv_out = c.heads * c.head_dim, c.kv_heads * c.head_dim
    shapes = {"model.embed_tokens.weight": (c.vocab, c.hidden),
              "model.norm.weight": (c.hidden,)}
    if not c.tied:
        shapes["lm_head.weight"] = (c.vocab, c.hidden)
    for i in range(c.layers):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        shapes.update({
            p + "input_layernorm.weight": (c.hidden,),
            p + "post_attention_layernorm.weight": (c.hidden,),
            a + "q_proj.weight": (q_out, c.hidden),
            a + "k_proj.weight": (kv_out, c.hidden),
            a + "v_proj.weight": (kv_out, c.hidden),
            a + "o_proj.weight": (c.hidden, q_out),
            p + "mlp.gate_proj.weight": (c.intermediate, c.hidden),
            p + "mlp.up_proj.weight": (c.intermediate, c.hidden),
            p + "mlp.down_proj.weight": (c.hidden, c.intermediate),
        })
        if c.qkv_bias:
            shapes.update({a + "q_proj.bias": (q_out,), a + "k_proj.bias": (kv_out,),
                           a + "v_proj.bias": (kv_out,)})
        if c.o_bias:
            shapes[a + "o_proj.bias"] = (c.hidden,)
        if c.mlp_bias:
            shapes.update({p + "mlp.gate_proj.bias": (c.intermediate,),
                           p + "mlp.up_proj.bias": (c.intermediate,),
                           p + "mlp.down_proj.bias": (c.hidden,)})
        if c.qk_norm:
            shapes.update({a + "q_norm.weight": (c.head_dim,),
                           a + "k_norm.weight": (c.head_dim,)})
    return shapes


def check_weights(c, tensors):
    """Every expected tensor present with its shape, and nothing else in the checkpoint."""
    want = expected_shapes(c)
    missing = sorted(set(want) - set(tensors))
    unused = sorted(n for n in set(tensors) - set(want) if not n.endswith("rotary_emb.inv_freq"))
    if missing:
        raise ValueError(f"missing tensors: {missing[:5]}")
    if unused:
        raise ValueError(f"tensors this config does not use: {unused[:5]}")
    for name, shape in want.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{name}: shape {list(tensors[name].shape)}, expected {list(shape)}")


class Model:
    def __init__(self, model_dir):
        self.config = load_config(model_dir)
        self.w = read_checkpoint(model_dir)
        check_weights(self.config, self.w)

    def linear(self, x, name):
        """HF nn.Linear: x @ W.T (+ b); W is [out, in]."""
        y = x @ self.w[name + ".weight"].T
        bias = self.w.get(name + ".bias")
        return y if bias is None else y + bias

    def logits(self, ids):
        """[len(ids), vocab] float64 logits; row i predicts the token after ids[i]."""
        c = self.config
        x = self.w["model.embed_tokens.weight"][np.asarray(ids, dtype=np.int64)]
        cos, sin = rope_tables(c, len(ids))
        for i in range(c.layers):
            p = f"model.layers.{i}."
            h = rms_norm(x, self.w[p + "input_layernorm.weight"], c.eps)
            x = x + self.attention(h, p + "self_attn.", cos, sin)
            h = rms_norm(x, self.w[p + "post_attention_layernorm.weight"], c.eps)
            x = x + self.mlp(h, p + "mlp.")
        x = rms_norm(x, self.w["model.norm.weight"], c.eps)
        head = "model.embed_tokens.weight" if c.tied else "lm_head.weight"
        return x @ self.w[head].T

    def attention(self, h, a, cos, sin):
        c = self.config
        n = h.shape[0]
        q = self.linear(h, a + "q_proj").reshape(n, c.heads, c.head_dim)
        k = self.linear(h, a + "k_proj").reshape(n, c.kv_heads, c.head_dim)
        v = self.linear(h, a + "v_proj").reshape(n, c.kv_heads, c.head_dim)
        if c.qk_norm:  # Qwen3: per-head RMSNorm, before RoPE
            q = rms_norm(q, self.w[a + "q_norm.weight"], c.eps)
            k = rms_norm(k, self.w[a + "k_norm.weight"], c.eps)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = c.heads // c.kv_heads
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # kv head j -> j*group..
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(c.head_dim)
        scores = scores + np.triu(np.full((n, n), -np.inf), k=1)
        out = np.einsum("hqk,khd->qhd", softmax(scores), v).reshape(n, c.heads * c.head_dim)
        return self.linear(out, a + "o_proj")

    def mlp(self, h, p):
        gate, up = self.linear(h, p + "gate_proj"), self.linear(h, p + "up_proj")
        return self.linear(silu(gate) * up, p + "down_proj")


# ---------------------------------------------------------------------------- pieces

def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def inv_frequencies(c):
    d = c.head_dim
    inv_freq = 1.0 / c.theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    scaling = c.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "llama3":
        return llama3_inv_frequencies(inv_freq, scaling)
    raise ValueError(f"unsupported rope_scaling type {kind}")


def llama3_inv_frequencies(inv_freq, s):
    """Llama 3.1: long wavelengths divided by factor, short kept, the band between blended."""
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_len = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen, high_freq_wavelen = old_len / low, old_len / high
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, blended, scaled)


def rope_tables(c, n):
    """cos, sin of shape [n, 1, head_dim]: the angles repeated for both halves."""
    angles = np.outer(np.arange(n, dtype=np.float64), inv_frequencies(c))
    angles = np.concatenate([angles, angles], axis=-1)[:, None, :]
    return np.cos(angles), np.sin(angles)


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # rotate_half
    return x * cos + rotated * sin


def greedy(model, ids, steps):
    """The greedy continuation (argmax, ties to the lower id), recomputing every step."""
    ids = list(ids)
    for _ in range(steps):
        ids.append(int(np.argmax(model.logits(ids)[-1])))
    return ids[len(ids) - steps:]


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    model = Model(argv[1])
    ids = [int(t) for t in argv[2].split(",")]
    lp = log_softmax(model.logits(ids)[-1])
    top = np.argsort(-lp, kind="stable")[:5]
    print("next token top-5:", ", ".join(f"{t}:{lp[t]:.6f}" for t in top))
    if len(argv) >= 5 and argv[3] == "--greedy":
        print("greedy:", greedy(model, ids, int(argv[4])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
