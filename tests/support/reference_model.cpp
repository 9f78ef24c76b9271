// Follows transformers' modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py line by
// line, in double, with plain loops: no paging, no cache, attention recomputed over the
// whole prefix for every position. Deliberately shares nothing with the backends.
#include "support/reference_model.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace cachet::testing {

namespace {

using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

// LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * weight.
std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<float>& weight,
                             double eps) {
  double mean_sq = 0.0;
  for (double v : x) mean_sq += v * v;
  mean_sq /= static_cast<double>(x.size());
  const double r = 1.0 / std::sqrt(mean_sq + eps);
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = weight.at(i) * (x[i] * r);
  return y;
}

// A weight widened to fp32 (exact), with its shape.
struct Dense {
  explicit Dense(const model::HostTensor& t) : values(t.to_f32()), shape(t.shape) {}
  std::vector<float> values;
  std::vector<std::int64_t> shape;
};

// nn.Linear: y = x W^T + b with W [out, in].
std::vector<double> linear(const std::vector<double>& x, const Dense& w, const Dense* bias) {
  const std::size_t out = static_cast<std::size_t>(w.shape.at(0));
  const std::size_t in = static_cast<std::size_t>(w.shape.at(1));
  if (x.size() != in) throw std::invalid_argument("reference linear: size mismatch");
  std::vector<double> y(out, 0.0);
  for (std::size_t o = 0; o < out; ++o) {
    double acc = 0.0;
    for (std::size_t i = 0; i < in; ++i) acc += static_cast<double>(w.values[o * in + i]) * x[i];
    if (bias != nullptr) acc += bias->values.at(o);
    y[o] = acc;
  }
  return y;
}

// rope_init_fn: default, or "llama3" (_compute_llama3_parameters).
std::vector<double> inverse_frequencies(const model::ModelConfig& config) {
  const int dim = config.head_dim;
  std::vector<double> inv_freq;
  for (int i = 0; i < dim; i += 2) {
    inv_freq.push_back(1.0 / std::pow(config.rope_theta, static_cast<double>(i) / dim));
  }
  if (!config.rope_scaling) return inv_freq;
  const auto& rs = *config.rope_scaling;
  const double old_context_len = static_cast<double>(rs.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / rs.low_freq_factor;
  const double high_freq_wavelen = old_context_len / rs.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    const double scaled = wavelen > low_freq_wavelen ? f / rs.factor : f;
    const double smooth = (old_context_len / wavelen - rs.low_freq_factor) /
                          (rs.high_freq_factor - rs.low_freq_factor);
    const double smoothed = (1.0 - smooth) * scaled / rs.factor + smooth * scaled;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = is_medium ? smoothed : scaled;
  }
  return inv_freq;
}

// apply_rotary_pos_emb on one head: x * cos + rotate_half(x) * sin, with
// emb = cat(freqs, freqs) and rotate_half(x) = cat(-x2, x1).
void apply_rope(double* x, int head_dim, int position, const std::vector<double>& inv_freq) {
  const int half = head_dim / 2;
  std::vector<double> rotated(static_cast<std::size_t>(head_dim));
  for (int i = 0; i < head_dim; ++i) {
    rotated[i] = i < half ? -x[i + half] : x[i - half];
  }
  for (int i = 0; i < head_dim; ++i) {
    const double angle = position * inv_freq[i % half];
    x[i] = x[i] * std::cos(angle) + rotated[i] * std::sin(angle);
  }
}

}  // namespace

std::vector<std::vector<double>> reference_forward(const model::ModelConfig& config,
                                                   const model::ModelWeights& weights,
                                                   std::span<const TokenId> tokens) {
  const int seq_len = static_cast<int>(tokens.size());
  const int hidden = config.hidden_size;
  const int n_heads = config.num_heads;
  const int n_kv = config.num_kv_heads;
  const int hd = config.head_dim;
  const int groups = n_heads / n_kv;  // num_key_value_groups (repeat_kv)
  const double eps = config.rms_norm_eps;
  const std::vector<double> inv_freq = inverse_frequencies(config);

  // Embedding.
  Matrix hidden_states(seq_len, std::vector<double>(hidden));
  for (int t = 0; t < seq_len; ++t) {
    std::vector<float> row(static_cast<std::size_t>(hidden));
    weights.embed_tokens.to_f32(std::int64_t{tokens[t]} * hidden, hidden, row.data());
    std::copy(row.begin(), row.end(), hidden_states[t].begin());
  }

  for (const model::LayerWeights& layer : weights.layers) {
    const bool bias = config.attention_bias;
    const Dense wq(layer.q_proj), wk(layer.k_proj), wv(layer.v_proj), wo(layer.o_proj);
    const Dense wgate(layer.gate_proj), wup(layer.up_proj), wdown(layer.down_proj);
    const Dense bq(layer.q_bias), bk(layer.k_bias), bv(layer.v_bias);  // empty without bias
    const std::vector<float> input_norm = layer.input_norm.to_f32();
    const std::vector<float> post_norm = layer.post_attention_norm.to_f32();
    const std::vector<float> q_norm = layer.q_norm.to_f32(), k_norm = layer.k_norm.to_f32();
    // Self-attention block.
    Matrix q(seq_len), k(seq_len), v(seq_len);  // [t][heads * head_dim]
    for (int t = 0; t < seq_len; ++t) {
      const auto x = rms_norm(hidden_states[t], input_norm, eps);
      q[t] = linear(x, wq, bias ? &bq : nullptr);
      k[t] = linear(x, wk, bias ? &bk : nullptr);
      v[t] = linear(x, wv, bias ? &bv : nullptr);
      for (int h = 0; h < n_heads; ++h) {
        double* qh = q[t].data() + h * hd;
        if (config.qk_norm) {  // Qwen3: q_norm over head_dim before RoPE
          const auto normed = rms_norm(std::vector<double>(qh, qh + hd), q_norm, eps);
          std::copy(normed.begin(), normed.end(), qh);
        }
        apply_rope(qh, hd, t, inv_freq);
      }
      for (int h = 0; h < n_kv; ++h) {
        double* kh = k[t].data() + h * hd;
        if (config.qk_norm) {
          const auto normed = rms_norm(std::vector<double>(kh, kh + hd), k_norm, eps);
          std::copy(normed.begin(), normed.end(), kh);
        }
        apply_rope(kh, hd, t, inv_freq);
      }
    }
    const double scaling = 1.0 / std::sqrt(static_cast<double>(hd));
    for (int t = 0; t < seq_len; ++t) {
      std::vector<double> attn_output(static_cast<std::size_t>(n_heads) * hd, 0.0);
      for (int h = 0; h < n_heads; ++h) {
        const int kvh = h / groups;
        // Causal mask: key positions [0, t]; softmax in the usual max-subtracted form.
        std::vector<double> scores(static_cast<std::size_t>(t) + 1);
        double max_score = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          double s = 0.0;
          for (int d = 0; d < hd; ++d) s += q[t][h * hd + d] * k[j][kvh * hd + d];
          scores[j] = s * scaling;
          max_score = std::max(max_score, scores[j]);
        }
        double sum = 0.0;
        for (double& s : scores) {
          s = std::exp(s - max_score);
          sum += s;
        }
        for (int j = 0; j <= t; ++j) {
          for (int d = 0; d < hd; ++d) {
            attn_output[h * hd + d] += scores[j] / sum * v[j][kvh * hd + d];
          }
        }
      }
      const auto o = linear(attn_output, wo, nullptr);
      for (int i = 0; i < hidden; ++i) hidden_states[t][i] += o[i];
    }
    // MLP block: down(silu(gate(x)) * up(x)).
    for (int t = 0; t < seq_len; ++t) {
      const auto x = rms_norm(hidden_states[t], post_norm, eps);
      const auto gate = linear(x, wgate, nullptr);
      const auto up = linear(x, wup, nullptr);
      std::vector<double> act(gate.size());
      for (std::size_t i = 0; i < gate.size(); ++i) {
        act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      }
      const auto down = linear(act, wdown, nullptr);
      for (int i = 0; i < hidden; ++i) hidden_states[t][i] += down[i];
    }
  }

  const std::vector<float> final_norm = weights.final_norm.to_f32();
  const Dense output(weights.output_embedding());
  Matrix logits(seq_len);
  for (int t = 0; t < seq_len; ++t) {
    const auto x = rms_norm(hidden_states[t], final_norm, eps);
    logits[t] = linear(x, output, nullptr);
  }
  return logits;
}

}  // namespace cachet::testing
