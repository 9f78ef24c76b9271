// Every CPU kernel variant this machine can run (cpu_isa.h) against a naive fp64 reference,
// and the FMA variants (AVX-512, AVX2) against each other bit for bit: they perform the same
// operations in the same order, so which one a machine picks never changes a result.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "model/dtype.h"

namespace cachet::backend::cpu {
namespace {

std::vector<float> random_vec(std::size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

double naive_dot(const float* a, const float* b, std::int64_t n) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Within fp32 accumulation error of an n-term dot product of values in [-1, 1].
double tolerance(std::int64_t n) { return 4e-7 * static_cast<double>(n) + 1e-6; }

const std::int64_t kLengths[] = {1, 5, 16, 17, 64, 100, 1024, 1031};

// Rows of n weights stored as one WeightType, at an address 2 bytes past 8-byte alignment,
// with their exact fp32 widening.
class StoredRows {
 public:
  StoredRows(const std::vector<float>& values, std::int64_t n, WeightType type)
      : n_(n), size_(type == kWeightF32 ? 4 : 2), bytes_(values.size() * size_ + 2) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      std::byte* at = bytes_.data() + 2 + i * size_;
      if (type == kWeightF32) {
        std::memcpy(at, &values[i], 4);
        widened_.push_back(values[i]);
        continue;
      }
      const std::uint16_t h =
          type == kWeightBF16 ? model::f32_to_bf16(values[i]) : model::f32_to_f16(values[i]);
      std::memcpy(at, &h, 2);
      widened_.push_back(type == kWeightBF16 ? model::bf16_to_f32(h) : model::f16_to_f32(h));
    }
  }
  const void* row(int r) const { return bytes_.data() + 2 + r * n_ * size_; }
  const float* widened_row(int r) const { return widened_.data() + r * n_; }

 private:
  std::int64_t n_;
  std::int64_t size_;
  std::vector<std::byte> bytes_;
  std::vector<float> widened_;
};

TEST(CpuKernels, TheChoiceIsRunnableAndGenericIsAlwaysThere) {
  const auto runnable = runnable_kernels();
  ASSERT_FALSE(runnable.empty());
  EXPECT_EQ(std::string(runnable.back()->isa), "generic");
  bool chosen_is_runnable = false;
  for (const Kernels* k : runnable) chosen_is_runnable |= k == &kernels();
  EXPECT_TRUE(chosen_is_runnable);
  const char* env = std::getenv("CACHET_CPU_ISA");
  if (env != nullptr && isa_choice().ignored.empty()) {
    EXPECT_EQ(std::string(kernels().isa), env);
  }
  std::printf("[ info ] cpu kernels: %s of %zu runnable\n", kernels().isa, runnable.size());
}

TEST(CpuKernels, EveryVariantMatchesTheNaiveReference) {
  std::mt19937_64 rng(3);
  for (const Kernels* k : runnable_kernels()) {
    SCOPED_TRACE(k->isa);
    for (std::int64_t n : kLengths) {
      const auto a = random_vec(static_cast<std::size_t>(n), rng);
      const auto b = random_vec(static_cast<std::size_t>(n), rng);
      EXPECT_NEAR(k->dot(a.data(), b.data(), n), naive_dot(a.data(), b.data(), n), tolerance(n));
      // Every tile width: each output element is that same dot product, bit for bit.
      const auto w = random_vec(static_cast<std::size_t>(n * kTileRows), rng);
      const auto x = random_vec(static_cast<std::size_t>(n * kMaxTileTokens), rng);
      const float* xp[kMaxTileTokens];
      for (int t = 0; t < kMaxTileTokens; ++t) xp[t] = x.data() + t * n;
      for (int type = 0; type < kNumWeightTypes; ++type) {
        // The weights as stored in `type`, 2 bytes off alignment, and widened back to fp32.
        const StoredRows stored(w, n, static_cast<WeightType>(type));
        const void* wp[kTileRows];
        for (int r = 0; r < kTileRows; ++r) wp[r] = stored.row(r);
        for (int tokens = 1; tokens <= kMaxTileTokens; ++tokens) {
          float out[kMaxTileTokens * kTileRows];
          k->dot_tiles[type][tokens](xp, wp, n, out);
          for (int t = 0; t < tokens; ++t) {
            for (int r = 0; r < kTileRows; ++r) {
              EXPECT_EQ(out[t * kTileRows + r], k->dot(xp[t], stored.widened_row(r), n))
                  << "n " << n << " tokens " << tokens << " weight type " << type;
            }
          }
        }
      }
    }
  }
}

TEST(CpuKernels, WeightedSumsMatchTheNaiveReference) {
  std::mt19937_64 rng(4);
  for (const Kernels* k : runnable_kernels()) {
    SCOPED_TRACE(k->isa);
    for (std::int64_t dim : {1, 16, 64, 100, 128}) {
      for (int heads = 1; heads <= kMaxTileTokens; ++heads) {
        const std::int32_t n = 1 + static_cast<std::int32_t>(rng() % kWindow);
        float a[kMaxTileTokens][kWindow];
        for (auto& row : a)
          for (float& v : row) v = random_vec(1, rng)[0];
        const auto rows = random_vec(static_cast<std::size_t>(n * dim), rng);
        std::vector<const float*> xp(static_cast<std::size_t>(n));
        for (std::int32_t j = 0; j < n; ++j)
          xp[static_cast<std::size_t>(j)] = rows.data() + j * dim;
        auto y = random_vec(static_cast<std::size_t>(heads * dim), rng);
        const auto y0 = y;
        k->weighted_sums[heads](a, xp.data(), n, y.data(), dim);
        for (int h = 0; h < heads; ++h) {
          for (std::int64_t d = 0; d < dim; ++d) {
            double want = y0[static_cast<std::size_t>(h * dim + d)];
            for (std::int32_t j = 0; j < n; ++j) want += double{a[h][j]} * rows[j * dim + d];
            EXPECT_NEAR(y[static_cast<std::size_t>(h * dim + d)], want, tolerance(n + 1));
          }
        }
      }
    }
  }
}

TEST(CpuKernels, FmaVariantsAreBitIdentical) {
  std::vector<const Kernels*> fma;
  for (const Kernels* k : runnable_kernels())
    if (std::string(k->isa) != "generic") fma.push_back(k);
  if (fma.size() < 2) GTEST_SKIP() << "this CPU runs fewer than two FMA variants";
  std::mt19937_64 rng(5);
  for (std::int64_t n : kLengths) {
    const auto a = random_vec(static_cast<std::size_t>(n), rng);
    const auto b = random_vec(static_cast<std::size_t>(n), rng);
    for (std::size_t i = 1; i < fma.size(); ++i)
      EXPECT_EQ(fma[0]->dot(a.data(), b.data(), n), fma[i]->dot(a.data(), b.data(), n))
          << fma[0]->isa << " vs " << fma[i]->isa << ", n " << n;
  }
}

}  // namespace
}  // namespace cachet::backend::cpu
