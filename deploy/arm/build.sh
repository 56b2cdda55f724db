#!/usr/bin/env bash
# Cross-build the kernel library for ARM boards with Debian's cross compilers, check each build
# with the C++ self-test under qemu-user, and stage the libraries where the loader looks:
#   native/lib/aarch64/libedge_kernels.so   (64-bit: Raspberry Pi 3/4/5 on a 64-bit OS, Jetson)
#   native/lib/armhf/libedge_kernels.so     (32-bit ARMv7 + NEON, hard float: Pi 2, 32-bit Pi OS)
#
#   deploy/arm/build.sh [TARGET...]    (default: aarch64 armhf; SELFTEST=0 skips the self-test)
#
# Needs: apt-get install g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user make
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64 armhf)

for target in "${targets[@]}"; do
    echo "== $target"
    make -s -C "$root/native" -j2 TARGET="$target" all
    if [ "${SELFTEST:-1}" != 0 ]; then
        make -s -C "$root/native" TARGET="$target" selftest
    fi
    install -D -m 0644 "$root/build/native/$target/libedge_kernels.so" \
        "$root/native/lib/$target/libedge_kernels.so"
    echo "staged native/lib/$target/libedge_kernels.so"
done
