#!/usr/bin/env bash
# A sysroot of Debian's arm64 or armhf -dev packages of edge-device's libraries (and their runtime
# dependencies) for cross builds, unpacked under DIR with `dpkg -x`: nothing on the system changes
# (no `dpkg --add-architecture`, no installed foreign packages). apt runs with a private state and
# cache below DIR, so it needs only the host's sources list and network access to the mirror.
#
#   sysroot.sh aarch64|armhf DIR
set -euo pipefail
target=${1:?usage: sysroot.sh aarch64|armhf DIR}
dir=${2:?usage: sysroot.sh aarch64|armhf DIR}
case "$target" in
    aarch64) arch=arm64 ;;
    armhf) arch=armhf ;;
    *) echo "sysroot.sh: target must be aarch64 or armhf, not $target" >&2; exit 2 ;;
esac
packages="libmosquitto-dev libmosquitto1 libmsgpack-dev libmsgpackc2 libsodium-dev libsodium23 libssl3"

state="$dir.apt"
rm -rf "$dir" "$state"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs" "$dir"
touch "$state/status"
apt_opts=(-o "Dir::State::Lists=$state/lists" -o "Dir::State::status=$state/status"
          -o "Dir::Cache=$state/cache" -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
          -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
# A mirror in mid-sync can fail one index (e.g. the security suite's) while the others load: the
# download below fails if a package is really missing.
apt-get "${apt_opts[@]}" update -qq || echo "sysroot.sh: apt-get update reported errors; trying the download" >&2
(cd "$state/debs" && apt-get "${apt_opts[@]}" download $(printf "%s:$arch " $packages))
for deb in "$state/debs"/*.deb; do
    dpkg -x "$deb" "$dir"
done
rm -rf "$state"
touch "$dir/.complete"
echo "sysroot.sh: $target sysroot in $dir: $packages"
