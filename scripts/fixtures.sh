#!/usr/bin/env bash
# Builds the busybox base root filesystems used by the demo recipe and the tests:
#   OUT/busybox-{amd64,386,armv5,armv6,armv7,arm64,ppc64le,s390x}.tar.gz
# from Debian's busybox-static package of each architecture, downloaded with the
# machine's own apt configuration into a cache, so it runs once per machine; and, as
# root (mmdebstrap needs it here), the Debian bookworm bases of the package-install tests:
#   OUT/debian-amd64.tar.zst   minbase + python3, pip (native; apt and pip workloads)
#   OUT/debian-arm64.tar.zst   minbase (emulated; apt workload)
# built once per machine with mmdebstrap from /etc/apt/sources.list.d/debian.sources.
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

# Debian bases. mmdebstrap runs as uid 0 of a private user namespace mapped onto an
# unprivileged range (scripts/userns-root.pl), so a maintainer script is never host
# root; that namespace mounts its own binfmt_misc (Linux >= 6.7) and registers the
# foreign emulator there with the F flag from qemu/binfmt.conf, so the host's binfmt_misc
# is not touched and arch-test/binfmt-support are not needed (hence --skip=check/qemu).
# Device nodes are left out of the tarball (--skip=output/dev): xbake's sandbox brings
# its own /dev. The apt options are those of this machine's /etc/apt/apt.conf.d that the
# archive here needs (its snapshot is older than its Valid-Until).
debian_base() { # DEBIAN_ARCH QEMU_NAME|"" EXTRA_PACKAGES
  # The cached file's name carries the package list, so changing it makes a new base.
  local arch=$1 qemu=$2 include=$3
  local dest="$cache/debian-$1${include:+-$(printf %s "$include" | sha256sum | cut -c1-8)}.tar.zst"
  if [ -s "$dest" ]; then return; fi
  if [ "$(id -u)" != 0 ]; then
    echo "fixtures: skipping debian-$arch (mmdebstrap needs root here; the tests that use it skip)" >&2
    return
  fi
  local work; work=$(mktemp -d /var/tmp/xbake-mmdebstrap.XXXXXX)
  chown 1000000000:1000000000 "$work"   # uid 0 of the namespace below
  echo "fixtures: building debian-$arch with mmdebstrap (minutes, once per machine)"
  local started=$SECONDS
  HOME=$work perl scripts/userns-root.pl 1000000000 65536 \
    unshare --mount --pid --fork bash -euo pipefail -c '
      qemu=$1 table=$2 arch=$3 include=$4 work=$5 sources=$6
      if [ -n "$qemu" ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        read -r name magic mask < <(awk -v n="$qemu" '"'"'$1 == n'"'"' "$table")
        printf ":qemu-%s:M::%s:%s:/usr/bin/qemu-%s-static:F\n" "$name" "$magic" "$mask" "$name" \
          > /proc/sys/fs/binfmt_misc/register
      fi
      mmdebstrap --quiet --variant=minbase --mode=root --arch="$arch" ${include:+--include="$include"} \
        --skip=check/qemu --skip=output/dev \
        --aptopt="Acquire::Check-Valid-Until \"false\"" --aptopt="Acquire::Check-Date \"false\"" \
        --aptopt="Acquire::Languages \"none\"" \
        bookworm "$work/base.tar" "$sources"
    ' fixture "$qemu" "$PWD/qemu/binfmt.conf" "$arch" "$include" "$work" \
      /etc/apt/sources.list.d/debian.sources \
    || { rm -rf "$work"; echo "fixtures: mmdebstrap for $arch failed" >&2; exit 1; }
  zstd -q -T0 -10 "$work/base.tar" -o "$work/base.tar.zst"
  mv "$work/base.tar.zst" "$dest"
  rm -rf "$work"
  echo "fixtures: debian-$arch took $((SECONDS - started)) s"
}
debian_base amd64 "" python3,python3-pip
debian_base arm64 aarch64 ""
debian_fixture() { # DEBIAN_ARCH EXTRA_PACKAGES: the cached base as OUT/debian-ARCH.tar.zst
  local src="$cache/debian-$1${2:+-$(printf %s "$2" | sha256sum | cut -c1-8)}.tar.zst"
  if [ -s "$src" ]; then
    rm -f "$out/debian-$1.tar.zst"
    ln -f "$src" "$out/debian-$1.tar.zst" 2>/dev/null || cp "$src" "$out/debian-$1.tar.zst"
  fi
}
debian_fixture amd64 python3,python3-pip
debian_fixture arm64 ""
echo "fixtures: $(ls "$out" | wc -l) base images in $out"
