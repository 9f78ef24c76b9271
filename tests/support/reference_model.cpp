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
std::vector<double> rms_norm(const std::vector<double>& x, const model::HostTensor& weight,
                             double eps) {
  double mean_sq = 0.0;
  for (double v : x) mean_sq += v * v;
  mean_sq /= static_cast<double>(x.size());
  const double r = 1.0 / std::sqrt(mean_sq + eps);
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = weight.data.at(i) * (x[i] * r);
  return y;
}

// nn.Linear: y = x W^T + b with W [out, in].
std::vector<double> linear(const std::vector<double>& x, const model::HostTensor& w,
                           const model::HostTensor* bias) {
  const std::size_t out = static_cast<std::size_t>(w.dim(0));
  const std::size_t in = static_cast<std::size_t>(w.dim(1));
  if (x.size() != in) throw std::invalid_argument("reference linear: size mismatch");
  std::vector<double> y(out, 0.0);
  for (std::size_t o = 0; o < out; ++o) {
    double acc = 0.0;
    for (std::size_t i = 0; i < in; ++i) acc += static_cast<double>(w.data[o * in + i]) * x[i];
    if (bias != nullptr && !bias->empty()) acc += bias->data.at(o);
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
    const auto row = static_cast<std::size_t>(tokens[t]) * hidden;
    for (int i = 0; i < hidden; ++i) hidden_states[t][i] = weights.embed_tokens.data.at(row + i);
  }

  for (const model::LayerWeights& layer : weights.layers) {
    // Self-attention block.
    Matrix q(seq_len), k(seq_len), v(seq_len);  // [t][heads * head_dim]
    for (int t = 0; t < seq_len; ++t) {
      const auto x = rms_norm(hidden_states[t], layer.input_norm, eps);
      const bool bias = config.attention_bias;
      q[t] = linear(x, layer.q_proj, bias ? &layer.q_bias : nullptr);
      k[t] = linear(x, layer.k_proj, bias ? &layer.k_bias : nullptr);
      v[t] = linear(x, layer.v_proj, bias ? &layer.v_bias : nullptr);
      for (int h = 0; h < n_heads; ++h) {
        double* qh = q[t].data() + h * hd;
        if (config.qk_norm) {  // Qwen3: q_norm over head_dim before RoPE
          const auto normed = rms_norm(std::vector<double>(qh, qh + hd), layer.q_norm, eps);
          std::copy(normed.begin(), normed.end(), qh);
        }
        apply_rope(qh, hd, t, inv_freq);
      }
      for (int h = 0; h < n_kv; ++h) {
        double* kh = k[t].data() + h * hd;
        if (config.qk_norm) {
          const auto normed = rms_norm(std::vector<double>(kh, kh + hd), layer.k_norm, eps);
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
      const auto o = linear(attn_output, layer.o_proj, nullptr);
      for (int i = 0; i < hidden; ++i) hidden_states[t][i] += o[i];
    }
    // MLP block: down(silu(gate(x)) * up(x)).
    for (int t = 0; t < seq_len; ++t) {
      const auto x = rms_norm(hidden_states[t], layer.post_attention_norm, eps);
      const auto gate = linear(x, layer.gate_proj, nullptr);
      const auto up = linear(x, layer.up_proj, nullptr);
      std::vector<double> act(gate.size());
      for (std::size_t i = 0; i < gate.size(); ++i) {
        act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      }
      const auto down = linear(act, layer.down_proj, nullptr);
      for (int i = 0; i < hidden; ++i) hidden_states[t][i] += down[i];
    }
  }

  Matrix logits(seq_len);
  for (int t = 0; t < seq_len; ++t) {
    const auto x = rms_norm(hidden_states[t], weights.final_norm, eps);
    logits[t] = linear(x, weights.output_embedding(), nullptr);
  }
  return logits;
}

}  // namespace cachet::testing
