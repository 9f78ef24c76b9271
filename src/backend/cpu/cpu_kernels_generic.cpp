// The portable variants of the CPU kernels: the compiler's baseline for the target (on x86-64, SSE2
// without FMA; see src/CMakeLists.txt).
#define CACHET_CPU_KERNELS_ISA generic
#include "backend/cpu/cpu_kernels.inc"
