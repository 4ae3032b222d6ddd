#!/usr/bin/env bash
# Builds the busybox base root filesystems used by the demo recipe and the tests:
#   OUT/busybox-{amd64,386,armv5,armv6,armv7,arm64,ppc64le,s390x}.tar.gz
# from Debian's busybox-static package of each architecture, downloaded with the
# machine's own apt configuration into a cache, so it runs once per machine; and, as
# root (mmdebstrap needs it here), the Debian bookworm bases of the package-install tests:
#   OUT/debian-amd64.tar.zst   minbase + python3, pip (native; apt and pip workloads)
#   OUT/debian-arm64.tar.zst   minbase (emulated; apt workload)
#   OUT/golang-amd64.tar.zst   minbase + golang-go (the Go toolchain that cross-compiles
#                              recipes/go-hello.yaml in its `platform: build` stage)
# built once per machine with mmdebstrap from /etc/apt/sources.list.d/debian.sources.
# With --bench, also the toolchain for two foreign CPUs, which only `just bench` uses
# (it compiles the same program emulated, to compare with the cross-compile):
#   OUT/golang-arm64.tar.zst, OUT/golang-ppc64le.tar.zst
# and the minbase bases of the bench's 3-platform Debian (apt) workload, beside the
# arm64 one above, named like the busybox bases (TARGETARCH + TARGETVARIANT):
#   OUT/debian-armv7.tar.zst (Debian armhf), OUT/debian-ppc64le.tar.zst (ppc64el)
set -euo pipefail

out=${1:?usage: fixtures.sh OUT_DIR [--bench]}
bench=${2:-}
case $bench in ""|--bench) ;; *) echo "usage: fixtures.sh OUT_DIR [--bench]" >&2; exit 2 ;; esac
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

# Debian bases. mmdebstrap runs as uid 0 of a private user namespace mapped onto an
# unprivileged range (scripts/userns-root.pl), so a maintainer script is never host
# root; that namespace mounts its own binfmt_misc (Linux >= 6.7) and registers the
# foreign emulator there with the F flag from qemu/binfmt.conf, so the host's binfmt_misc
# is not touched and arch-test/binfmt-support are not needed (hence --skip=check/qemu).
# Device nodes are left out of the tarball (--skip=output/dev): xbake's sandbox brings
# its own /dev. The apt options are those of this machine's /etc/apt/apt.conf.d that the
# archive here needs (its snapshot is older than its Valid-Until). What mmdebstrap, apt
# and hooks print goes to a log whose end is shown only when mmdebstrap fails.
# The cached file's name carries a hash of the package list and extra mmdebstrap
# options, so changing either makes a new base (a base without options keeps its name).
debian_cached() { # NAME DEBIAN_ARCH EXTRA_PACKAGES [MMDEBSTRAP_OPTIONS...]
  local name=$1 arch=$2 include=$3; shift 3
  local key=$include
  if (($#)); then key="$include $*"; fi
  echo "$cache/$name-$arch${key:+-$(printf %s "$key" | sha256sum | cut -c1-8)}.tar.zst"
}
debian_base() { # NAME DEBIAN_ARCH QEMU_NAME|"" EXTRA_PACKAGES [MMDEBSTRAP_OPTIONS...]
  local name=$1 arch=$2 qemu=$3 include=$4; shift 4
  local dest; dest=$(debian_cached "$name" "$arch" "$include" "$@")
  if [ -s "$dest" ]; then return; fi
  if [ "$(id -u)" != 0 ]; then
    echo "fixtures: skipping $name-$arch (mmdebstrap needs root here; the tests that use it skip)" >&2
    return
  fi
  local work; work=$(mktemp -d /var/tmp/xbake-mmdebstrap.XXXXXX)
  chown 1000000000:1000000000 "$work"   # uid 0 of the namespace below
  echo "fixtures: building $name-$arch with mmdebstrap (minutes, once per machine)"
  local started=$SECONDS
  HOME=$work perl scripts/userns-root.pl 1000000000 65536 \
    unshare --mount --pid --fork bash -euo pipefail -c '
      qemu=$1 table=$2 arch=$3 include=$4 work=$5 sources=$6; shift 6
      if [ -n "$qemu" ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        read -r name magic mask < <(awk -v n="$qemu" '"'"'$1 == n'"'"' "$table")
        printf ":qemu-%s:M::%s:%s:/usr/bin/qemu-%s-static:F\n" "$name" "$magic" "$mask" "$name" \
          > /proc/sys/fs/binfmt_misc/register
      fi
      mmdebstrap --quiet --variant=minbase --mode=root --arch="$arch" ${include:+--include="$include"} \
        --skip=check/qemu --skip=output/dev "$@" \
        --aptopt="Acquire::Check-Valid-Until \"false\"" --aptopt="Acquire::Check-Date \"false\"" \
        --aptopt="Acquire::Languages \"none\"" \
        bookworm "$work/base.tar" "$sources" > "$work/mmdebstrap.log" 2>&1
    ' fixture "$qemu" "$PWD/qemu/binfmt.conf" "$arch" "$include" "$work" \
      /etc/apt/sources.list.d/debian.sources "$@" \
    || { tail -n 30 "$work/mmdebstrap.log" >&2 2>/dev/null; rm -rf "$work"
         echo "fixtures: mmdebstrap for $name-$arch failed" >&2; exit 1; }
  zstd -q -T0 -10 "$work/base.tar" -o "$work/base.tar.zst"
  mv "$work/base.tar.zst" "$dest"
  rm -rf "$work"
  echo "fixtures: $name-$arch took $((SECONDS - started)) s ($(du -m "$dest" | cut -f1) MB)"
}
debian_fixture() { # NAME DEBIAN_ARCH OCI_ARCH EXTRA_PACKAGES [MMDEBSTRAP_OPTIONS...]: the cached base as OUT/NAME-OCI_ARCH.tar.zst
  local name=$1 arch=$2 oci=$3 include=$4; shift 4
  local src; src=$(debian_cached "$name" "$arch" "$include" "$@")
  if [ -s "$src" ]; then
    rm -f "$out/$name-$oci.tar.zst"
    ln -f "$src" "$out/$name-$oci.tar.zst" 2>/dev/null || cp "$src" "$out/$name-$oci.tar.zst"
  fi
}
debian() { # NAME DEBIAN_ARCH OCI_ARCH QEMU_NAME|"" EXTRA_PACKAGES [MMDEBSTRAP_OPTIONS...]
  local name=$1 arch=$2 oci=$3 qemu=$4 include=$5; shift 5
  debian_base "$name" "$arch" "$qemu" "$include" "$@"
  debian_fixture "$name" "$arch" "$oci" "$include" "$@"
}
debian debian amd64 amd64 "" python3,python3-pip
debian debian arm64 arm64 aarch64 ""

# The Go toolchain (bookworm's golang-go, Go 1.19), without what building a program does
# not read: documentation, Go's own test suite, testdata and API lists, and the
# precompiled standard library (pkg/linux_*: Go 1.20 and later ship none either; `go
# build` compiles what it needs into GOCACHE, so a native build and an emulated one do
# the same work from a cold cache). CGO_ENABLED=0 builds need nothing else: no gcc, no
# ca-certificates (no module downloads). The merged-usr hook makes /usr merged the way
# debootstrap does and installs usr-is-merged, so the essential init-system-helpers does
# not pull in usrmerge and with it perl (45 MB unpacked; see mmdebstrap(1), MERGED-/USR).
golang=(golang-go --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt="path-exclude=/usr/share/doc/*" --dpkgopt="path-include=/usr/share/doc/*/copyright"
  --dpkgopt="path-exclude=/usr/share/man/*" --dpkgopt="path-exclude=/usr/share/locale/*"
  --dpkgopt="path-exclude=/usr/lib/go-*/pkg/linux_*" --dpkgopt="path-exclude=/usr/share/go-*/test/*"
  --dpkgopt="path-exclude=/usr/share/go-*/src/*/testdata/*" --dpkgopt="path-exclude=/usr/share/go-*/api/*")
debian golang amd64 amd64 "" "${golang[@]}"
if [ "$bench" = --bench ]; then
  debian debian armhf armv7 arm ""
  debian debian ppc64el ppc64le ppc64le ""
  debian golang arm64 arm64 aarch64 "${golang[@]}"
  debian golang ppc64el ppc64le ppc64le "${golang[@]}"
fi
echo "fixtures: $(ls "$out" | wc -l) base images in $out"
