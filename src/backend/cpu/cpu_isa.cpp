#include "backend/cpu/cpu_isa.h"

#include <fmt/format.h>

#include <cstdlib>
#include <string_view>

#if CACHET_CPU_X86_VARIANTS
#include <cpuid.h>
#endif

namespace cachet::backend::cpu {

namespace generic {
extern const Kernels kKernels;
}
#if CACHET_CPU_X86_VARIANTS
namespace avx2 {
extern const Kernels kKernels;
}
namespace avx512 {
extern const Kernels kKernels;
}
#endif

namespace {

#if CACHET_CPU_X86_VARIANTS
// F16C (half <-> float conversions) from CPUID leaf 1, ECX bit 29: clang 14's
// __builtin_cpu_supports does not know "f16c".
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}
#endif

// What each variant was compiled for, checked against the CPU (src/CMakeLists.txt has the
// flags; the two lists must agree).
bool cpu_runs([[maybe_unused]] const Kernels& k) {
#if CACHET_CPU_X86_VARIANTS
  __builtin_cpu_init();
  const bool avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  if (&k == &avx2::kKernels) return avx2;
  if (&k == &avx512::kKernels) {
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  }
#endif
  return true;
}

IsaChoice choose() {
  const std::vector<const Kernels*> runnable = runnable_kernels();
  IsaChoice choice{runnable.front(), {}};
  const char* env = std::getenv("CACHET_CPU_ISA");
  if (env == nullptr || *env == '\0') return choice;
  const std::string_view wanted(env);
  for (const Kernels* k : runnable) {
    if (wanted == k->isa) {
      choice.kernels = k;
      return choice;
    }
  }
  std::vector<std::string_view> names;
  for (const Kernels* k : runnable) names.emplace_back(k->isa);
  choice.ignored = fmt::format("CACHET_CPU_ISA={} ignored: this binary and CPU can run {}", wanted,
                               fmt::join(names, ", "));
  return choice;
}

}  // namespace

std::vector<const Kernels*> runnable_kernels() {
  std::vector<const Kernels*> out;
#if CACHET_CPU_X86_VARIANTS
  for (const Kernels* k : {&avx512::kKernels, &avx2::kKernels})
    if (cpu_runs(*k)) out.push_back(k);
#endif
  out.push_back(&generic::kKernels);
  return out;
}

const IsaChoice& isa_choice() {
  static const IsaChoice choice = choose();
  return choice;
}

}  // namespace cachet::backend::cpu
