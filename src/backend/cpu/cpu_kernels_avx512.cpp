// The AVX-512 (F, BW, DQ, VL) variants of the CPU kernels (x86-64; flags in src/CMakeLists.txt).
#define CACHET_CPU_KERNELS_ISA avx512
#include "backend/cpu/cpu_kernels.inc"
