// The AVX2 + FMA variants of the CPU kernels (x86-64; flags in src/CMakeLists.txt).
#define CACHET_CPU_KERNELS_ISA avx2
#include "backend/cpu/cpu_kernels.inc"
