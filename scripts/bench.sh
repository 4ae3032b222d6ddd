#!/usr/bin/env bash
# `just bench`: xbake's build, cached rebuild and verify times for a 3-platform recipe,
# and xbake beside its peers (buildah, umoci, skopeo from Debian) on the same machine in
# the same run, reported as ratios: absolute times on shared machines mean little.
# Sections: busybox (the 3-platform busybox recipe and the native rows), go (the Go
# program emulated vs cross-compiled), debian (issue 11's apt workload on 3 emulated
# platforms, xbake vs buildah), ci (a cold CI build from a registry cache, xbake vs
# buildah's --cache-from). XBAKE_BENCH_ONLY=busybox|go|debian|ci runs one of them
# (default: all); XBAKE_BENCH_RUNS=N sets every row's run count (default: 3 for the
# Debian rows, the figure each row names for the others).
set -euo pipefail
cd "$(dirname "$0")/.."

fixtures=${1:?usage: bench.sh FIXTURES_DIR}
only=${XBAKE_BENCH_ONLY:-}
case $only in ""|busybox|go|debian|ci) ;; *) echo "bench: XBAKE_BENCH_ONLY is busybox, go, debian or ci (or unset: all)" >&2; exit 2 ;; esac
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
deb_runs=${XBAKE_BENCH_RUNS:-3}
case $deb_runs in ""|0|*[!0-9]*) echo "bench: XBAKE_BENCH_RUNS is a number of runs (>= 1)" >&2; exit 2 ;; esac
tools=()
if want busybox; then tools+=(hyperfine buildah umoci skopeo qemu-arm-static qemu-aarch64-static qemu-ppc64le-static); fi
if want go; then tools+=(hyperfine); fi
if want debian; then tools+=(buildah umoci skopeo jq pigz /usr/bin/time qemu-arm-static qemu-aarch64-static qemu-ppc64le-static); fi
if want ci; then tools+=(hyperfine buildah docker-registry qemu-arm-static qemu-aarch64-static qemu-ppc64le-static); fi
for tool in "${tools[@]}"; do
  case $tool in /usr/bin/time) pkg=time ;; qemu-*) pkg=qemu-user-static ;; *) pkg=$tool ;; esac
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: apt-get install $pkg" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (buildah's storage and umoci need it here)" >&2; exit 1; }

cargo build --release --quiet
repo=$PWD
X=$repo/target/release/xbake
# A lowercase name: buildah takes no upper case in an `oci:` path (mktemp's XXXXXX
# would give some). mkdir fails on a name that exists, so the folder is ours alone.
work=/var/tmp/xbake-bench.$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
mkdir -m 0700 "$work"
# binfmt_misc entries registered for buildah's emulated rows (host-wide, for its runs
# only), and whether it mounted binfmt_misc: the cleanup undoes exactly that.
binfmt=/proc/sys/fs/binfmt_misc
binfmt_ours=()
binfmt_mounted=
binfmt_off() {
  local entry
  for entry in "${binfmt_ours[@]}"; do
    [ ! -e "$binfmt/$entry" ] || echo -1 > "$binfmt/$entry" || echo "bench: could not remove binfmt entry $entry" >&2
  done
  binfmt_ours=()
}
# buildah runs foreign binaries through the host's binfmt_misc: qemu-user-static's
# emulators (magic and mask from qemu/binfmt.conf, as xbake uses them) with xbake's flags,
# so they work inside its chroot, registered right before each of its runs and removed
# right after (xbake's runs never see them: it registers its own in its namespace).
# An entry already there for the same magic, whatever its name, is used and left alone.
binfmt_on() {
  if [ ! -e "$binfmt/register" ]; then mount -t binfmt_misc binfmt_misc "$binfmt"; binfmt_mounted=1; fi
  local qemu name magic mask
  for qemu in arm aarch64 ppc64le; do
    read -r name magic mask < <(awk -v n="$qemu" '$1 == n' "$repo/qemu/binfmt.conf")
    if grep -qsx "magic ${magic//\\x/}" "$binfmt"/*; then continue; fi
    # xbake's own flags (qemu/README.md): without P, a busybox applet run through its
    # symlink loses its name and busybox runs another applet (`cat /f*` ran /f1 as a
    # shell script), so buildah's steps would not do what xbake's do.
    printf ':xbake-bench-%s:M::%s:%s:/usr/bin/qemu-%s-static:POCF\n' "$name" "$magic" "$mask" "$name" > "$binfmt/register"
    binfmt_ours+=("xbake-bench-$name")
  done
}

# buildah's overlay storage may hold mounts for a moment: let it clean up, unmount what
# an interrupted build left under the folder, and retry once, before the folder goes;
# the script's own exit status is kept.
cleanup() {
  local status=$?
  binfmt_off
  if [ -n "$binfmt_mounted" ]; then umount "$binfmt" || echo "bench: could not unmount $binfmt" >&2; fi
  ${B:-true} rmi -a -f >/dev/null 2>&1 || true
  if [ -n "${BD:-}" ]; then $BD rm -a >/dev/null 2>&1 || true; $BD rmi -a -f >/dev/null 2>&1 || true; fi
  if [ -n "${BC:-}" ]; then $BC rmi -a -f >/dev/null 2>&1 || true; fi
  if [ -n "${registry_pid:-}" ]; then kill "$registry_pid" 2>/dev/null || true; fi
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || { sleep 2; rm -rf "$work" || echo "bench: could not remove $work" >&2; }
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

run() { # name, runs (XBAKE_BENCH_RUNS, if set, instead), prepare, command
  hyperfine --style none --runs "${XBAKE_BENCH_RUNS:-$2}" --prepare "$3" --export-csv "$work/$1.csv" "$4" >/dev/null 2>&1 \
    || { echo "bench: '$4' failed" >&2; exit 1; }
  tail -n1 "$work/$1.csv" | awk -F, '{ print $(NF - 4) }'   # median seconds (the command may hold commas)
}

if want busybox; then
mkdir -p "$work/r/bases"
cp "$fixtures"/busybox-{amd64,arm64,armv7,ppc64le}.tar.gz "$work/r/bases/"
steps='
  - run: for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /f$i; done
  - run: cat /f* | md5sum > /sum
  - run: echo done > /done'
printf 'from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\nplatforms: [arm, arm64, ppc64le]\nsteps:%s\n' "$steps" > "$work/r/multi.yaml"
printf 'from: rootfs:bases/busybox-amd64.tar.gz\nsteps:%s\n' "$steps" > "$work/r/native.yaml"
# The same 3-platform build for buildah: the platform's busybox tarball ADDed to scratch.
cat > "$work/r/Containerfile.multi" <<'CF'
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
ADD bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz /
RUN for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /f$i; done
RUN cat /f* | md5sum > /sum
RUN echo done > /done
CF
cat > "$work/r/Containerfile" <<'CF'
FROM scratch
ADD bases/busybox-amd64.tar.gz /
RUN for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /f$i; done
RUN cat /f* | md5sum > /sum
RUN echo done > /done
CF
cd "$work/r"
# buildah at its best: overlay storage.
B="buildah --root $work/buildah/root --runroot $work/buildah/run --storage-driver overlay"

echo "== xbake, 3 platforms (arm/v7, arm64, ppc64le under QEMU), 3 RUN steps each =="
cold=$(run cold 5 "rm -rf $work/c $work/out" "$X build multi.yaml --cache-dir $work/c -o oci:$work/out:1 --progress quiet")
$X build multi.yaml --cache-dir "$work/c" -o "oci:$work/out:1" --progress quiet >/dev/null 2>&1
# buildah's emulated RUN steps go through host binfmt entries, there for its row alone.
binfmt_on
bmulti=$(run bmulti 5 "$B rmi -a -f >/dev/null 2>&1 || true; rm -rf $work/boutm" \
  "$B bud --isolation chroot -q --layers --jobs 3 --platform linux/arm/v7,linux/arm64,linux/ppc64le --manifest multi -f Containerfile.multi . >/dev/null && $B manifest push -q --all multi oci:$work/boutm:1")
binfmt_off
$B rmi -a -f >/dev/null 2>&1 || true
cached=$(run cached 10 "true" "$X build multi.yaml --cache-dir $work/c -o oci:$work/out:1 --progress quiet")
# The same with the cache's blobs, the bases and the emulators out of the page cache:
# `dd iflag=nocache count=0` is posix_fadvise(DONTNEED) on one file (coreutils' dd
# manual), not a global drop_caches, so other work on the machine keeps its cache.
evict="find $work/c/blobs $work/r/bases /usr/bin/ -maxdepth 2 -type f \( -path '*/blobs/*' -o -path '*/bases/*' -o -name 'qemu-*' \) -exec dd if={} iflag=nocache count=0 status=none \\;"
cached_evicted=$(run cachedevicted 10 "$evict" "$X build multi.yaml --cache-dir $work/c -o oci:$work/out:1 --progress quiet")
verify=$(run verify 3 "true" "$X verify multi.yaml --against oci:$work/out:1 --cache-dir $work/c")

# The isolation's cost against an earlier xbake (e.g. one built before the hardened
# sandbox): XBAKE_BENCH_BASELINE=/path/to/old/xbake just bench
if [ -n "${XBAKE_BENCH_BASELINE:-}" ]; then
  O=$XBAKE_BENCH_BASELINE
  echo "== the same 3-platform build with the baseline xbake ($O) =="
  base_cold=$(run basecold 5 "rm -rf $work/bc $work/bout1" "$O build multi.yaml --cache-dir $work/bc -o oci:$work/bout1:1 --progress quiet")
  $O build multi.yaml --cache-dir "$work/bc" -o "oci:$work/bout1:1" --progress quiet >/dev/null 2>&1
  base_cached=$(run basecached 10 "true" "$O build multi.yaml --cache-dir $work/bc -o oci:$work/bout1:1 --progress quiet")
fi

echo "== native amd64, the same 3 RUN steps: xbake vs buildah =="
xnative=$(run xnative 5 "rm -rf $work/cn $work/outn" "$X build native.yaml --arch amd64 --cache-dir $work/cn -o oci:$work/outn:1 --progress quiet")
bnative=$(run bnative 5 "$B rmi -a -f >/dev/null 2>&1 || true; rm -rf $work/bout" "$B bud --isolation chroot -q -t bench:1 . && $B push -q bench:1 oci:$work/bout:1")

echo "== normalisation: the same native step with and without the rules (--no-cache) =="
# The step writes files the rules cover (logs, apt caches, machine-id) next to 2000
# files they do not: the cost is the rule match over the step's changes plus the edits.
printf 'from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - run: mkdir -p /var/log/apt /var/cache/apt /etc/x && for i in $(seq 1 2000); do echo $i > /etc/x/$i; done && date > /var/log/dpkg.log && date > /var/log/apt/term.log && date > /var/cache/apt/pkgcache.bin && date > /etc/machine-id\n' > "$work/r/norm.yaml"
norm_on=$(run normon 10 "true" "$X build norm.yaml --arch amd64 --no-cache --cache-dir $work/cm -o oci:$work/outm:1 --progress quiet")
norm_off=$(run normoff 10 "true" "$X build norm.yaml --arch amd64 --no-cache --no-normalize --cache-dir $work/cm -o oci:$work/outm:1 --progress quiet")

echo "== committing a large layer: gzip on every core vs one thread (XBAKE_GZIP_THREADS=1), zstd =="
# A copy step of ~210 MB (numbers, then 40 MB of noise): little work besides reading,
# hashing and compressing the layer. The bytes are the same for any thread count.
{ seq 1 20000000; head -c 40000000 /dev/urandom; } > "$work/r/big.dat"
printf 'from: rootfs:bases/busybox-amd64.tar.gz\nsteps:\n  - copy: big.dat\n    to: /big.dat\n' > "$work/r/big.yaml"
big() { # name, env, extra flags
  run "$1" 3 "true" "env $2 $X build big.yaml --arch amd64 --no-cache $3 --cache-dir $work/cbig -o oci:$work/outbig:1 --progress quiet"
}
big_parallel=$(big bigpar "XBAKE_GZIP_THREADS=$(nproc)" "")
big_serial=$(big bigser "XBAKE_GZIP_THREADS=1" "")
big_zstd=$(big bigzstd "XBAKE_GZIP_THREADS=1" "--compression zstd")
rm -f "$work/r/big.dat"

echo "== writing a finished image: xbake fully cached rebuild vs skopeo copy --all =="
skopeo_copy=$(run skopeo 10 "rm -rf $work/scopy" "skopeo copy -q --all oci:$work/out:1 oci:$work/scopy:1")

echo "== a no-change commit: xbake cached rebuild (native) vs umoci unpack + repack =="
$X build native.yaml --arch amd64 --cache-dir "$work/cn" -o "oci:$work/outn:1" --progress quiet >/dev/null 2>&1
xcached_native=$(run xcn 10 "true" "$X build native.yaml --arch amd64 --cache-dir $work/cn -o oci:$work/outn:1 --progress quiet")
skopeo copy -q --override-arch amd64 "oci:$work/outn:1" "oci:$work/single:1"
umoci_repack=$(run umoci 5 "rm -rf $work/bundle" "umoci unpack --image $work/single:1 $work/bundle && umoci repack --image $work/single:1 $work/bundle")

echo "== sandbox start: the same 3 native RUN steps, private network (helper) vs host vs none =="
net() { run "net-$1" 10 "true" "$X build native.yaml --arch amd64 --no-cache --network $1 --cache-dir $work/cnet -o oci:$work/outnet:1 --progress quiet"; }
net_private=$(net private)
net_host=$(net host)
net_none=$(net none)
fi   # busybox

if want go; then
echo "== Go: one program for arm64 and ppc64le, compiled under QEMU vs cross-compiled natively =="
# The same program (recipes/go-hello) three ways, each from a cold Go build cache:
# emulated, on each target's own toolchain (golang-ARCH, a stage on the target
# platform); cross-compiled in recipes/go-hello.yaml's `platform: build` stage (one per
# target, side by side) and copied into busybox images; and cross-compiled in one native
# step that runs both `go build`s side by side (the compile alone, no stages). Each run
# starts from a copy of a cache that holds only the imported bases (made once below), so
# every step and every cache mount is cold but no run pays for converting the bases.
for f in golang-amd64.tar.zst golang-arm64.tar.zst golang-ppc64le.tar.zst; do
  [ -s "$fixtures/$f" ] || { echo "bench: no $fixtures/$f; run \`just bench-fixtures\` as root" >&2; exit 1; }
done
mkdir -p "$work/go/bases"
cp -r "$repo/recipes/go-hello" "$repo/recipes/go-hello.yaml" "$work/go/"
cp "$fixtures"/busybox-{arm64,ppc64le}.tar.gz "$fixtures"/golang-{amd64,arm64,ppc64le}.tar.zst "$work/go/bases/"
cd "$work/go"
# One `go build` for GOARCH=$a, in both recipes; the build cache goes with the step.
go_build='CGO_ENABLED=0 GOARCH=$a GOCACHE=/tmp/go-build-$a go build -trimpath -buildvcs=false -ldflags "-X main.platform=linux/$a" -o /out/$a/hello . \&\& rm -rf /tmp/go-build-$a'
cat > emulated.yaml <<'YAML'
from: rootfs:bases/golang-${TARGETARCH}.tar.zst
steps:
  - copy: go-hello/
    to: /src
  - workdir: /src
  - run: a=$TARGETARCH; @GO_BUILD@
    network: none
YAML
cat > one-step.yaml <<'YAML'
from: rootfs:bases/golang-amd64.tar.zst
steps:
  - copy: go-hello/
    to: /src
  - workdir: /src
  - run: pids=; for a in arm64 ppc64le; do (@GO_BUILD@) & pids="$pids $!"; done; for p in $pids; do wait $p || exit 1; done
    network: none
YAML
sed -i "s|@GO_BUILD@|$go_build|" emulated.yaml one-step.yaml
printf 'from: rootfs:bases/${BASE}\nargs: {BASE: ""}\nsteps: []\n' > bases.yaml
for base in golang-amd64.tar.zst:amd64 golang-arm64.tar.zst:arm64 golang-ppc64le.tar.zst:ppc64le \
            busybox-arm64.tar.gz:arm64 busybox-ppc64le.tar.gz:ppc64le; do
  $X build bases.yaml --build-arg "BASE=${base%%:*}" --arch "${base##*:}" --cache-dir "$work/go-bases" \
    -o "oci:$work/go-bases-out:1" --progress quiet >/dev/null 2>"$work/go-bases.log" \
    || { cat "$work/go-bases.log" >&2; exit 1; }
done
cold_go() { echo "rm -rf $work/gc $work/go-out && cp -a $work/go-bases $work/gc"; }
go_emulated=$(run goemu 3 "$(cold_go)" "$X build emulated.yaml --arch arm64,ppc64le --cache-dir $work/gc -o oci:$work/go-out:1 --progress quiet")
go_stage=$(run gostage 5 "$(cold_go)" "$X build go-hello.yaml --arch arm64,ppc64le --cache-dir $work/gc -o oci:$work/go-out:1 --progress quiet")
go_step=$(run gostep 5 "$(cold_go)" "$X build one-step.yaml --arch amd64 --cache-dir $work/gc -o oci:$work/go-out:1 --progress quiet")
fi   # go

if want debian; then
echo "== Debian (issue 11): apt-get install on arm/v7, arm64, ppc64le under QEMU, xbake vs buildah, $deb_runs run(s) per row =="
# The workload: two RUN steps on Debian bookworm minbase bases (scripts/fixtures.sh
# --bench), the first installing iptables and nfs-common with recommends from the
# Debian archive the bases' apt sources name (so the rows include downloads), the
# second `dpkg -l iptables`. Each row runs xbake and buildah alternately, run by run
# (x b x b …), each run timed alone (bash's clock around one command; output to a log),
# and reports per tool the median and min–max, and the ratio of the medians. Every
# row's timed command writes the 3-platform OCI layout (into a fresh folder each run):
# xbake's `-o oci:`, buildah's `manifest push --all … oci:` (which gzips the layers
# then; buildah's build alone, without that write, is shown beside it).
for a in armv7 arm64 ppc64le; do
  [ -s "$fixtures/debian-$a.tar.zst" ] || { echo "bench: no $fixtures/debian-$a.tar.zst; run \`just bench-fixtures\` as root" >&2; exit 1; }
done
deb=$work/deb
mkdir -p "$deb/bases"
cp "$fixtures"/debian-{armv7,arm64,ppc64le}.tar.zst "$deb/bases/"
cd "$deb"
deb_recipe() { # LAST_STEP: the xbake recipe and the Containerfile of the workload
  printf '%s\n' 'from: rootfs:bases/debian-${TARGETARCH}${TARGETVARIANT}.tar.zst' \
    'platforms: [arm/v7, arm64, ppc64le]' 'steps:' \
    "  - run: 'apt-get update && apt-get install -y iptables nfs-common'" "  - run: '$1'"
}
# buildah gets the same bases, imported (untimed except in the cold row) as one image
# per platform: `buildah from scratch` with that platform, `buildah add` of the very
# tarball xbake reads (buildah unpacks it, owners and modes kept), `buildah commit`.
# That is what xbake's `from: rootfs:` does on a cold cache (unpack into one base layer),
# so both start from the same files; the FROM names the local image (--pull=never).
deb_containerfile() { # LAST_STEP
  printf '%s\n' 'ARG TARGETARCH' 'ARG TARGETVARIANT' \
    'FROM localhost/xbake-bench-debian:${TARGETARCH}${TARGETVARIANT}' \
    'RUN apt-get update && apt-get install -y iptables nfs-common' "RUN $1"
}
deb_recipe 'dpkg -l iptables' > deb.yaml
deb_containerfile 'dpkg -l iptables' > Containerfile
# "Last step changed": run N builds a last step neither tool's cache has seen, from a
# cache warm with deb.yaml: `dpkg -l nfs-common`, and from run 2 on the same with a
# shell comment naming the run (quoted in the YAML, so the shell gets it). Both tools'
# caches key a step by its text, so rebuilding one fixed variant would be fully cached
# from run 2; restoring a copy of the cache instead would also make xbake re-hash every
# blob, whose trust records hold the inode.
for i in $(seq 1 "$deb_runs"); do
  step='dpkg -l nfs-common'; if [ "$i" -gt 1 ]; then step="$step  # rebuild $i"; fi
  deb_recipe "$step" > "changed-$i.yaml"
  deb_containerfile "$step" > "Containerfile.changed-$i"
done

# buildah at its best, as above: overlay storage, chroot isolation (no OCI runtime
# start; its RUN steps share the host's network, where xbake's go through its private
# network helper, slirp4netns), --layers for its step cache. xbake builds every
# platform side by side by default (-j: one per platform, up to four per CPU);
# buildah's --jobs (default 1, which also builds the platforms of a --platform list one
# after the other) gets the same: 3, one per platform.
BD="buildah --root $deb/buildah/root --runroot $deb/buildah/run --storage-driver overlay"
BPLAT=linux/arm/v7,linux/arm64,linux/ppc64le
b_import() { # SUFFIX ARCH [VARIANT]
  local c
  c=$($BD from -q --pull=never --arch "$2" ${3:+--variant "$3"} scratch) \
    && $BD add -q "$c" "bases/debian-$1.tar.zst" / \
    && $BD commit -q --rm "$c" "localhost/xbake-bench-debian:$1" >/dev/null
}
b_import_all() { # the three side by side (xbake's base imports run in its parallel stages)
  local pids=() p status=0
  b_import armv7 arm v7 & pids+=($!)
  b_import arm64 arm64 & pids+=($!)
  b_import ppc64le ppc64le & pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  return "$status"
}
b_build() { # CONTAINERFILE [BUILD_FLAGS...]
  local file=$1; shift
  $BD build -q --layers --pull=never --isolation chroot --jobs 3 --platform "$BPLAT" --manifest xbake-bench-deb \
    -f "$file" "$@" . >/dev/null
}
b_push() { $BD manifest push -q --all xbake-bench-deb "oci:$deb/bout:1"; }
b_wipe() { $BD rm -a >/dev/null 2>&1 || true; $BD rmi -a -f >/dev/null 2>&1 || true; rm -rf "$deb/buildah"; }

deb_log=$work/deb-run.log
deb_time() { # ROW TOOL COMMAND...: run COMMAND (stdin /dev/null) once, add its seconds to ROW-TOOL's list
  local start=$EPOCHREALTIME
  "${@:3}" < /dev/null > "$deb_log" 2>&1 || { echo "bench: $1 ($2) failed:" >&2; tail -n 30 "$deb_log" >&2; exit 1; }
  awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }' >> "$work/deb-$1-$2.times"
}
# Peak RSS of xbake during the cold build. /usr/bin/time's %M is ru_maxrss of wait4 on
# the launcher: the larger of the launcher's own peak and that of any one descendant it
# (or they) reaped (the kernel keeps the maximum, not a sum), so the emulated apt and dpkg
# processes count too and it is an upper bound. The launcher's own peak (its VmHWM, read
# from /proc every 0.2 s while it runs; the last reading is kept) is shown beside it.
x_cold() { # RUN
  /usr/bin/time -f %M -o "$work/deb-rss-$1" "$X" build deb.yaml --cache-dir "$deb/xc" -o "oci:$deb/xout:1" --progress quiet &
  local tpid=$! xpid= hwm= key value _
  while kill -0 "$tpid" 2>/dev/null; do
    [ -n "$xpid" ] || read -r xpid _ 2>/dev/null < "/proc/$tpid/task/$tpid/children" || true
    if [ -n "$xpid" ] && [ -r "/proc/$xpid/status" ]; then
      while read -r key value _; do [ "$key" != VmHWM: ] || hwm=$value; done < "/proc/$xpid/status" 2>/dev/null || true
    fi
    sleep 0.2
  done
  wait "$tpid" || return 1
  echo "${hwm:-0}" >> "$work/deb-hwm.list"
  tail -n1 "$work/deb-rss-$1" >> "$work/deb-rss.list"
}
x_build() { "$X" build "$1" --cache-dir "$deb/xc" -o "oci:$deb/xout:1" --progress quiet "${@:2}"; }
# buildah's layout write is also timed on its own within the run (the run is timed
# whole), so the report can show buildah without it.
b_time_push() { local s=$EPOCHREALTIME; b_push || return 1; awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }' > "$work/deb-push.last"; }
b_cold() { b_import_all && b_build Containerfile && b_time_push; }
b_build_push() { b_build "$@" && b_time_push; }
b_run() { # ROW COMMAND...: buildah's run, with binfmt entries for it alone
  rm -rf "$deb/bout"; $BD manifest rm xbake-bench-deb >/dev/null 2>&1 || true
  binfmt_on
  deb_time "$1" buildah "${@:2}"
  binfmt_off
  awk -v p="$(cat "$work/deb-push.last")" '{ t = $1 } END { printf "%.3f\n", t - p }' "$work/deb-$1-buildah.times" \
    >> "$work/deb-$1-nopush.times"
}
x_run() { rm -rf "$deb/xout"; deb_time "$@"; }

for i in $(seq 1 "$deb_runs"); do
  echo "   cold, run $i: xbake"
  rm -rf "$deb/xc"
  x_run cold xbake x_cold "$i"
  echo "   cold, run $i: buildah"
  b_wipe
  b_run cold b_cold
done
# Both caches are now warm with deb.yaml (the bases imported, both steps cached).
for i in $(seq 1 "$deb_runs"); do
  echo "   --no-cache, run $i"
  x_run nocache xbake x_build deb.yaml --no-cache
  b_run nocache b_build_push Containerfile --no-cache
done
for i in $(seq 1 "$deb_runs"); do
  echo "   fully cached, run $i"
  x_run cached xbake x_build deb.yaml
  b_run cached b_build_push Containerfile
done
# The same with an empty page cache: the kernel's whole page cache dropped before each
# run (root; the bench machine is otherwise idle), so every file either tool reads comes
# from the disk.
drop_caches() { sync && echo 3 > /proc/sys/vm/drop_caches; }
for i in $(seq 1 "$deb_runs"); do
  echo "   fully cached, page cache dropped, run $i"
  drop_caches; x_run cachedcold xbake x_build deb.yaml
  drop_caches; b_run cachedcold b_build_push Containerfile
done
for i in $(seq 1 "$deb_runs"); do
  echo "   last step changed, run $i"
  x_run changed xbake x_build "changed-$i.yaml"
  b_run changed b_build_push "Containerfile.changed-$i"
done

# Base unpack, one platform (the arm64 base, 1 layer): xbake's own phases, read off its
# `--progress plain` lines (to 10 ms), against the peers' commands timed whole.
#  cold: an empty cache. xbake imports the rootfs tarball (decompress, hash, compress
#    its layer blob: `ready in`) and unpacks that layer (`unpacked … in`); buildah
#    imports the same tarball (`from scratch` + `add` + `commit`: unpack, then tar and
#    compress its layer) and mounts a container of it (`from` + `mount`).
#  warm: the layer is already unpacked. xbake mounts its snapshot (`mounted in`),
#    buildah mounts a new container of the image it has.
#  umoci unpack of the same base as an OCI image (umoci has no store: always cold).
# The step itself (`true`) is the same in each run and not counted.
printf '%s\n' 'from: rootfs:bases/debian-arm64.tar.zst' 'steps:' '  - run: "true"' > unpack.yaml
phase() { # LOG PATTERN: the seconds of the last progress line matching PATTERN (… in N.NN s)
  grep -E "$2" "$1" | tail -n1 | sed -E 's/.* in ([0-9.]+) s.*/\1/' | grep -E '^[0-9.]+$' \
    || { echo "bench: no '$2' line in xbake's output:" >&2; tail -n 20 "$1" >&2; exit 1; }
}
x_unpack() { # COLD|WARM: one xbake build of unpack.yaml; its base phase seconds into the row
  local log=$work/deb-unpack.log
  [ "$1" = warm ] || rm -rf "$deb/uc"
  "$X" build unpack.yaml --arch arm64 --no-cache --cache-dir "$deb/uc" -o "oci:$deb/uout:1" --progress plain \
    < /dev/null > "$log" 2>&1 || { echo "bench: xbake unpack build failed:" >&2; tail -n 30 "$log" >&2; exit 1; }
  if [ "$1" = warm ]; then
    phase "$log" 'from the snapshot store, mounted in' >> "$work/deb-unpackwarm-xbake.times"
  else
    awk -v a="$(phase "$log" 'ready in')" -v b="$(phase "$log" 'base: unpacked')" 'BEGIN { printf "%.3f\n", a + b }' \
      >> "$work/deb-unpackcold-xbake.times"
  fi
}
b_mount_new() { local c; c=$($BD from -q --pull=never localhost/xbake-bench-debian:arm64) && $BD mount "$c" >/dev/null; }
b_unpack_cold() { b_import arm64 arm64 && b_mount_new; }
"$X" build unpack.yaml --arch arm64 --cache-dir "$deb/uimg" -o "oci:$deb/uimg-out:1" --progress quiet >/dev/null 2>&1
skopeo copy -q --override-arch arm64 "oci:$deb/uimg-out:1" "oci:$deb/single:1"
for i in $(seq 1 "$deb_runs"); do
  echo "   base unpack, run $i"
  drop_caches; x_unpack cold
  drop_caches; b_wipe; deb_time unpackcold buildah b_unpack_cold
  drop_caches; rm -rf "$deb/bundle"; deb_time unpackcold umoci umoci unpack --image "$deb/single:1" "$deb/bundle"
  x_unpack warm
  deb_time unpackwarm buildah b_mount_new
done
b_wipe

# Commit of the apt layer: its files (the arm64 apt-get layer of the last build,
# extracted, whiteouts left out) copied onto the arm64 base by a `copy:` step, whose
# `committed … in` line times the commit alone (changes read from the upper folder,
# normalised, tar, sha256, parallel gzip, sha256, file); against the shell pipeline
# that does the same passes over the same files, on all cores.
blob() { echo "$deb/xout/blobs/sha256/${1#sha256:}"; }   # DIGEST: its file in the layout
apt_index=$(jq -r '.manifests[0].digest' "$deb/xout/index.json")
apt_manifest=$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$(blob "$apt_index")")
apt_layer=$(blob "$(jq -r '.layers[1].digest' "$(blob "$apt_manifest")")")
mkdir "$deb/aptfiles"
tar -xzf "$apt_layer" -C "$deb/aptfiles" --numeric-owner --exclude='.wh.*' --exclude='*/.wh.*'
apt_size=$(du -sb "$deb/aptfiles" | cut -f1)
printf '%s\n' 'from: rootfs:bases/debian-arm64.tar.zst' 'steps:' '  - copy: aptfiles/' '    to: /' > commit.yaml
x_commit() {
  local log=$work/deb-commit.log
  "$X" build commit.yaml --arch arm64 --no-cache --cache-dir "$deb/uc" -o "oci:$deb/cout:1" --progress plain \
    < /dev/null > "$log" 2>&1 || { echo "bench: xbake commit build failed:" >&2; tail -n 30 "$log" >&2; exit 1; }
  phase "$log" 'step 1/1 committed' >> "$work/deb-commit-xbake.times"
}
shell_commit() { tar -C "$deb/aptfiles" -cf - . | tee >(sha256sum > /dev/null) | pigz -p "$(nproc)" | sha256sum > /dev/null; }
shell_commit > /dev/null   # warm the page cache for both, as xbake's first build does
for i in $(seq 1 "$deb_runs"); do
  echo "   apt layer commit, run $i"
  x_commit
  deb_time commit shell shell_commit
done
fi

if want ci; then
# A CI runner starts empty: a cold build with --cache-from a registry cache (written
# once by an earlier job) against a cold build without it, and buildah's --cache-from
# of the same registry (its --layers cache, pushed with --cache-to), on the 3-platform
# busybox recipe with a step that takes a while (what a cache saves).
echo "== CI: a cold build from a registry cache (--cache-from), xbake vs buildah =="
ci=$work/ci
mkdir -p "$ci/r/bases" "$ci/registry"
cp "$fixtures"/busybox-{arm64,armv7,ppc64le}.tar.gz "$ci/r/bases/"
ci_steps='
  - run: for i in $(seq 1 40); do seq 1 3000 > /f$i; done
  - run: cat /f* | md5sum > /sum'
printf 'from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\nplatforms: [arm, arm64, ppc64le]\nsteps:%s\n' "$ci_steps" > "$ci/r/ci.yaml"
cat > "$ci/r/Containerfile" <<'CF'
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
ADD bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz /
RUN for i in $(seq 1 40); do seq 1 3000 > /f$i; done
RUN cat /f* | md5sum > /sum
CF
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$ci/registry.yml" <<YML
version: 0.1
storage: {filesystem: {rootdirectory: $ci/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$ci/registry.yml" > "$ci/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
reg=127.0.0.1:$port
cd "$ci/r"
# The cache, as an earlier CI job leaves it.
$X build ci.yaml --cache-dir "$ci/seed" -o "oci:$ci/seed-out:1" --progress quiet \
  --cache-to "type=registry,ref=$reg/bench/app:buildcache,mode=max" >/dev/null
xcinone=$(run xcinone 3 "rm -rf $ci/c $ci/out" "$X build ci.yaml --cache-dir $ci/c -o oci:$ci/out:1 --progress quiet")
xcifrom=$(run xcifrom 3 "rm -rf $ci/c $ci/out" "$X build ci.yaml --cache-dir $ci/c -o oci:$ci/out:1 --progress quiet --cache-from type=registry,ref=$reg/bench/app:buildcache")
BC="buildah --root $ci/buildah/root --runroot $ci/buildah/run --storage-driver overlay"
binfmt_on
$BC bud --isolation chroot -q --layers --jobs 3 --tls-verify=false --cache-to "$reg/bench/bcache" \
  --platform linux/arm/v7,linux/arm64,linux/ppc64le --manifest seed -f Containerfile . >/dev/null
bcinone=$(run bcinone 3 "$BC rmi -a -f >/dev/null 2>&1 || true; rm -rf $ci/bout" \
  "$BC bud --isolation chroot -q --layers --jobs 3 --platform linux/arm/v7,linux/arm64,linux/ppc64le --manifest m -f Containerfile . >/dev/null && $BC manifest push -q --all m oci:$ci/bout:1")
bcifrom=$(run bcifrom 3 "$BC rmi -a -f >/dev/null 2>&1 || true; rm -rf $ci/bout" \
  "$BC bud --isolation chroot -q --layers --jobs 3 --tls-verify=false --cache-from $reg/bench/bcache --platform linux/arm/v7,linux/arm64,linux/ppc64le --manifest m -f Containerfile . >/dev/null && $BC manifest push -q --all m oci:$ci/bout:1")
binfmt_off
$BC rmi -a -f >/dev/null 2>&1 || true
kill "$registry_pid" 2>/dev/null || true
cd "$repo"
fi   # ci

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%8.0f ms", s * 1000 }'; }
echo
echo "results (medians; this machine: $(nproc) cores)"
if want ci; then
cat <<REPORT
  cold CI build, 3 emulated platforms + layout write, fresh cache each run:
    xbake without a cache                    $(ms "$xcinone")
    xbake --cache-from a registry cache      $(ms "$xcifrom")   from/none = $(ratio "$xcifrom" "$xcinone")
    buildah (overlay) without a cache        $(ms "$bcinone")
    buildah --cache-from the same registry   $(ms "$bcifrom")   from/none = $(ratio "$bcifrom" "$bcinone")   xbake/buildah (both from the cache) = $(ratio "$xcifrom" "$bcifrom")
REPORT
fi
if want busybox; then
cat <<REPORT
  xbake cold build, 3 emulated platforms      $(ms "$cold")
    buildah (overlay), the same, + push --all $(ms "$bmulti")   xbake/buildah = $(ratio "$cold" "$bmulti")
  xbake fully cached rebuild + output write   $(ms "$cached")   cached/cold = $(ratio "$cached" "$cold")
    the same, its files out of the page cache $(ms "$cached_evicted")   evicted/cached = $(ratio "$cached_evicted" "$cached")
  xbake verify (rebuild without cache + diff) $(ms "$verify")   verify/cold = $(ratio "$verify" "$cold")

  native amd64 build + OCI output: xbake      $(ms "$xnative")
                                   buildah    $(ms "$bnative")   xbake/buildah = $(ratio "$xnative" "$bnative")   (overlay storage)
  write a 3-platform image: xbake (cached)    $(ms "$cached")
                            skopeo copy --all $(ms "$skopeo_copy")   xbake/skopeo = $(ratio "$cached" "$skopeo_copy")
  no-change rebuild: xbake (cached, native)   $(ms "$xcached_native")
                     umoci unpack + repack    $(ms "$umoci_repack")   xbake/umoci = $(ratio "$xcached_native" "$umoci_repack")
  3 RUN steps, native, --no-cache: network none     $(ms "$net_none")
                                   network host     $(ms "$net_host")
                                   network private  $(ms "$net_private")   helper per step = $(awk -v p="$net_private" -v h="$net_host" 'BEGIN { printf "%.0f ms", (p - h) * 1000 / 3 }')
  commit a 210 MB layer: gzip, $(nproc) threads    $(ms "$big_parallel")
                         gzip, 1 thread     $(ms "$big_serial")   parallel/serial = $(ratio "$big_parallel" "$big_serial")
                         zstd (level 3)     $(ms "$big_zstd")   zstd/parallel gzip = $(ratio "$big_zstd" "$big_parallel")
  one step, normalised                        $(ms "$norm_on")
            --no-normalize                    $(ms "$norm_off")   on/off = $(ratio "$norm_on" "$norm_off")
REPORT
if [ -n "${XBAKE_BENCH_BASELINE:-}" ]; then
  cat <<REPORT
  baseline xbake, 3 emulated platforms, cold  $(ms "$base_cold")   this/baseline = $(ratio "$cold" "$base_cold")
                  fully cached rebuild        $(ms "$base_cached")   this/baseline = $(ratio "$cached" "$base_cached")
REPORT
fi
fi
if want go; then
cat <<REPORT
  Go, arm64 + ppc64le, cold: emulated         $(ms "$go_emulated")
    cross-compiled in a platform: build stage $(ms "$go_stage")   emulated/cross = $(ratio "$go_emulated" "$go_stage")
    cross-compiled in one native step         $(ms "$go_step")   stage/step = $(ratio "$go_stage" "$go_step")
REPORT
fi
if want debian; then
# median, min and max (seconds) of one list of run times
stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'; }
range() { awk -v a="$1" -v b="$2" 'BEGIN { printf "[%.0f–%.0f ms]", a * 1000, b * 1000 }'; }
deb_row() { # ROW TITLE (two lines: xbake, then buildah with the ratio and buildah without its layout write)
  local xm xl xh bm bl bh nm nl nh
  read -r xm xl xh < <(stats "$work/deb-$1-xbake.times")
  read -r bm bl bh < <(stats "$work/deb-$1-buildah.times")
  read -r nm nl nh < <(stats "$work/deb-$1-nopush.times")
  printf '  %-42s  xbake  %s %s\n' "$2" "$(ms "$xm")" "$(range "$xl" "$xh")"
  printf '  %-42s buildah %s %s   xbake/buildah = %s   (buildah without the layout write %s %s)\n' \
    "" "$(ms "$bm")" "$(range "$bl" "$bh")" "$(ratio "$xm" "$bm")" "$(ms "$nm" | tr -s ' ')" "$(range "$nl" "$nh")"
}
peer_row() { # ROW TITLE PEER [PEER_TITLE]: xbake's line, then the peer's with the ratio of the medians
  local xm xl xh pm pl ph
  read -r xm xl xh < <(stats "$work/deb-$1-xbake.times")
  read -r pm pl ph < <(stats "$work/deb-$1-$3.times")
  printf '  %-42s  xbake  %s %s\n' "$2" "$(ms "$xm")" "$(range "$xl" "$xh")"
  printf '  %-42s %7s %s %s   xbake/%s = %s\n' "" "$3" "$(ms "$pm")" "$(range "$pl" "$ph")" "$3" "$(ratio "$xm" "$pm")"
}
read -r rm_ rl rh < <(stats "$work/deb-rss.list")
read -r hm hl hh < <(stats "$work/deb-hwm.list")
echo "  Debian apt (iptables, nfs-common), arm/v7 + arm64 + ppc64le under QEMU, + OCI layout write;"
echo "  medians of $deb_runs run(s) [min–max]; buildah on overlay storage, chroot isolation:"
deb_row cold "cold (empty caches; buildah imports the bases)"
deb_row nocache "--no-cache (bases imported)"
deb_row cached "fully cached rebuild"
deb_row cachedcold "fully cached, page cache dropped"
deb_row changed "last step changed (cache warm)"
echo "  base unpack, Debian arm64 base (1 layer), xbake's phases from its progress lines:"
peer_row unpackcold "cold: import tarball + unpack (no page cache)" buildah
read -r um ul uh < <(stats "$work/deb-unpackcold-umoci.times")
printf '  %-42s %7s %s %s   (an OCI image of the same base, always a full unpack)\n' "" umoci "$(ms "$um")" "$(range "$ul" "$uh")"
peer_row unpackwarm "warm: layer already unpacked, mount" buildah
peer_row commit "commit the arm64 apt layer ($((apt_size / 1048576)) MiB of files)" shell
echo "  (shell: tar | tee >(sha256sum) | pigz -p $(nproc) | sha256sum, on the same files)"
printf '  %-42s  %8.0f KiB [%.0f–%.0f]   the launcher alone (VmHWM) %.0f KiB [%.0f–%.0f]\n' \
  "xbake peak RSS, cold (time %M, max of tree)" "$rm_" "$rl" "$rh" "$hm" "$hl" "$hh"
fi
