// Which instruction set the CPU kernels (cpu_kernels.h) run with: the best variant this
// binary has and this CPU supports (AVX-512, else AVX2 + FMA + F16C, else generic), chosen
// once per process. The environment variable CACHET_CPU_ISA (avx512, avx2, generic) forces
// a lower one, e.g. to compare paths or to test them all on one machine; a value the CPU
// cannot run, or an unknown one, is ignored (the choice says why).
#pragma once

#include <string>
#include <vector>

#include "backend/cpu/cpu_kernels.h"

namespace cachet::backend::cpu {

struct IsaChoice {
  const Kernels* kernels = nullptr;
  // Why CACHET_CPU_ISA was not followed ("" when it was, or is unset).
  std::string ignored;
};

// The process's choice, made on first use (thread-safe).
const IsaChoice& isa_choice();
inline const Kernels& kernels() { return *isa_choice().kernels; }

// Every variant this binary has that this CPU can run, best first (generic always last).
std::vector<const Kernels*> runnable_kernels();

}  // namespace cachet::backend::cpu
