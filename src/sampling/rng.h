// The counter-based random numbers behind sampling: Philox-4x32-10 (Salmon et al., "Parallel
// random numbers: as easy as 1, 2, 3", SC 2011), the generator cuRAND and the Random123
// library implement. Header-only and constexpr so that the CUDA sampler can compile the very
// same code and draw bit-identical numbers.
#pragma once

#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define CACHET_HOST_DEVICE __host__ __device__
#else
#define CACHET_HOST_DEVICE
#endif

namespace cachet::sampling {

using PhiloxCounter = std::array<std::uint32_t, 4>;
using PhiloxKey = std::array<std::uint32_t, 2>;

// Philox-4x32 with 10 rounds: a bijection of the 128-bit counter for every 64-bit key, so
// distinct counters under one key can never produce the same block. Checked against
// Random123's published known-answer vectors in the tests.
CACHET_HOST_DEVICE constexpr PhiloxCounter philox4x32_10(PhiloxCounter ctr, PhiloxKey key) {
  constexpr std::uint32_t kM0 = 0xD2511F53u;
  constexpr std::uint32_t kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u;  // golden ratio
  constexpr std::uint32_t kW1 = 0xBB67AE85u;  // sqrt(3) - 1
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * ctr[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * ctr[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32);
    const auto lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32);
    const auto lo1 = static_cast<std::uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    key = {key[0] + kW0, key[1] + kW1};  // the bump after the last round is unused
  }
  return ctr;
}

// uniform(seed, counter) as defined by sampler.h: one Philox-4x32-10 block with
//   key     = {low 32 bits of seed, high 32 bits of seed}
//   counter = {low 32 bits of counter, high 32 bits of counter, 0, 0}
// whose first two output words form a 64-bit integer (word 0 high); its top 53 bits scaled
// by 2^-53 give a double in [0, 1 - 2^-53]. Every (seed, counter) pair is a distinct Philox
// input, and because Philox is a keyed bijection no two counters of one seed collide.
CACHET_HOST_DEVICE constexpr double philox_uniform(std::uint64_t seed, std::uint64_t counter) {
  const PhiloxCounter block = philox4x32_10(
      {static_cast<std::uint32_t>(counter), static_cast<std::uint32_t>(counter >> 32), 0u, 0u},
      {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
  const std::uint64_t bits = (static_cast<std::uint64_t>(block[0]) << 32) | block[1];
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

}  // namespace cachet::sampling
