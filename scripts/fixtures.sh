#!/usr/bin/env bash
# Builds the busybox base root filesystems used by the demo recipe and the tests:
#   OUT/busybox-{amd64,386,armv5,armv6,armv7,arm64,ppc64le,s390x}.tar.gz
# from Debian's busybox-static package of each architecture, downloaded with the
# machine's own apt configuration into a cache, so it runs once per machine.
set -euo pipefail

out=${1:?usage: fixtures.sh OUT_DIR}
cache=${XBAKE_FIXTURE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xbake-fixtures}
mkdir -p "$out" "$cache/debs"

# Debian architecture -> base file names (TARGETARCH + TARGETVARIANT).
declare -A names=(
  [amd64]="amd64" [i386]="386" [armel]="armv5 armv6" [armhf]="armv7"
  [arm64]="arm64" [ppc64el]="ppc64le" [s390x]="s390x"
)

apt_opts() {
  local arch=$1
  echo "-q -oAPT::Architecture=$arch -oAPT::Architectures=$arch" \
       "-oDir::State::Lists=$cache/lists-$arch -oDir::Cache=$cache/apt-cache-$arch" \
       "-oDebug::NoLocking=1 -oAPT::Sandbox::User=$(id -un)"
}

fetch() {
  local arch=$1
  if compgen -G "$cache/debs/busybox-static_*_$arch.deb" >/dev/null; then return; fi
  echo "fixtures: downloading busybox-static for $arch"
  mkdir -p "$cache/lists-$arch/partial" "$cache/apt-cache-$arch/archives/partial"
  # A stale index for one suite (e.g. security) is not fatal: the package comes from
  # the main suite; the download below is what must succeed.
  # shellcheck disable=SC2046
  apt-get $(apt_opts "$arch") update >/dev/null 2>&1 || true
  # shellcheck disable=SC2046
  (cd "$cache/debs" && apt-get $(apt_opts "$arch") download busybox-static >/dev/null)
}

for arch in "${!names[@]}"; do
  fetch "$arch"
  rm -rf "$cache/x-$arch"
  dpkg-deb -x "$(ls "$cache"/debs/busybox-static_*_"$arch".deb | head -n1)" "$cache/x-$arch"
done

# The applet list is the same for every architecture of one package version; ask the
# native (amd64) binary.
"$cache/x-amd64/bin/busybox" --list-full > "$cache/applets"

cargo build --quiet --example mkbase
mkbase=${CARGO_TARGET_DIR:-target}/debug/examples/mkbase
for arch in "${!names[@]}"; do
  for name in ${names[$arch]}; do
    "$mkbase" "$cache/x-$arch/bin/busybox" "$cache/applets" "$out/busybox-$name.tar.gz"
  done
done
echo "fixtures: $(ls "$out" | wc -l) base images in $out"
