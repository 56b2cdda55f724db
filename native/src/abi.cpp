// Version and build description of the library.
#include "edge_kernels.h"

#if defined(__x86_64__)
#define EK_TARGET "x86_64 (baseline + x86-64-v3 clones)"
#elif defined(__aarch64__)
#define EK_TARGET "aarch64"
#elif defined(__arm__)
#define EK_TARGET "armhf"
#else
#define EK_TARGET "unknown"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define EK_SANITIZE " +asan"
#else
#define EK_SANITIZE ""
#endif

extern "C" int ek_abi_version(void) { return EK_ABI_VERSION; }

extern "C" const char *ek_build_info(void) {
    return "edge_kernels " EK_TARGET " g++ " __VERSION__ EK_SANITIZE;
}
