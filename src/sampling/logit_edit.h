// One token's logits processing (logits_processors.h) as plain data: what the host builds
// for a request and both samplers apply, so that the CPU path and the CUDA sampler do the
// very same fp32 arithmetic. Header-only for the CUDA sampler (kernels/logits_processing.cu).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CACHET_LOGIT_EDIT_HD __host__ __device__
#else
#define CACHET_LOGIT_EDIT_HD
#endif

namespace cachet::sampling {

// What happens to the logit of token `id`, in this order (vLLM's): masked to -inf
// (min_tokens), else `bias` added (logit_bias; 0 when none), then x / penalty when x > 0 and
// x * penalty otherwise (repetition_penalty for a token seen in the prompt or the output; 1,
// an exact no-op, for others), then `subtract` taken away (frequency_penalty * count +
// presence_penalty for a generated token, computed once on the host; 0 for others).
struct LogitEdit {
  std::int32_t id = 0;
  std::int32_t mask = 0;  // nonzero: the logit becomes -inf, whatever follows
  float bias = 0.0f;
  float penalty = 1.0f;
  float subtract = 0.0f;
};

// The edited logit. Each operation is rounded on its own (no fused multiply-add): the device
// uses the explicit round-to-nearest intrinsics, and the host file that calls this is built
// with -ffp-contract=off.
CACHET_LOGIT_EDIT_HD inline float apply_logit_edit(float x, const LogitEdit& e) {
  if (e.mask != 0) return -__builtin_huge_valf();
#if defined(__CUDA_ARCH__)
  x = __fadd_rn(x, e.bias);
  x = x > 0.0f ? __fdiv_rn(x, e.penalty) : __fmul_rn(x, e.penalty);
  return __fsub_rn(x, e.subtract);
#else
  x = x + e.bias;
  x = x > 0.0f ? x / e.penalty : x * e.penalty;
  return x - e.subtract;
#endif
}

}  // namespace cachet::sampling
