#!/usr/bin/env bash
# `just bench`: xbake's build, cached rebuild and verify times for a 3-platform recipe,
# and xbake beside its peers (buildah, umoci, skopeo from Debian) on the same machine in
# the same run, reported as ratios: absolute times on shared machines mean little.
set -euo pipefail
cd "$(dirname "$0")/.."

fixtures=${1:?usage: bench.sh FIXTURES_DIR}
for tool in hyperfine buildah umoci skopeo; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: apt-get install $tool" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (buildah's storage and umoci need it here)" >&2; exit 1; }

cargo build --release --quiet
repo=$PWD
X=$repo/target/release/xbake
work=$(mktemp -d /var/tmp/xbake-bench.XXXXXX)
# buildah's overlay storage may hold mounts for a moment: let it clean up, and retry
# once, before the folder goes; the script's own exit status is kept.
cleanup() {
  local status=$?
  ${B:-true} rmi -a -f >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || { sleep 2; rm -rf "$work" || echo "bench: could not remove $work" >&2; }
  exit "$status"
}
trap cleanup EXIT
mkdir -p "$work/r/bases"
cp "$fixtures"/busybox-{amd64,arm64,armv7,ppc64le}.tar.gz "$work/r/bases/"
steps='
  - run: for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /f$i; done
  - run: cat /f* | md5sum > /sum
  - run: echo done > /done'
printf 'from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\nplatforms: [arm, arm64, ppc64le]\nsteps:%s\n' "$steps" > "$work/r/multi.yaml"
printf 'from: rootfs:bases/busybox-amd64.tar.gz\nsteps:%s\n' "$steps" > "$work/r/native.yaml"
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

run() { # name, runs, prepare, command
  hyperfine --style none --runs "$2" --prepare "$3" --export-csv "$work/$1.csv" "$4" >/dev/null 2>&1 \
    || { echo "bench: '$4' failed" >&2; exit 1; }
  tail -n1 "$work/$1.csv" | awk -F, '{ print $(NF - 4) }'   # median seconds (the command may hold commas)
}

echo "== xbake, 3 platforms (arm/v7, arm64, ppc64le under QEMU), 3 RUN steps each =="
cold=$(run cold 5 "rm -rf $work/c $work/out" "$X build multi.yaml --cache-dir $work/c -o oci:$work/out:1 --progress quiet")
$X build multi.yaml --cache-dir "$work/c" -o "oci:$work/out:1" --progress quiet >/dev/null 2>&1
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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%8.0f ms", s * 1000 }'; }
cat <<REPORT

results (medians; this machine: $(nproc) cores)
  xbake cold build, 3 emulated platforms      $(ms "$cold")
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
  Go, arm64 + ppc64le, cold: emulated         $(ms "$go_emulated")
    cross-compiled in a platform: build stage $(ms "$go_stage")   emulated/cross = $(ratio "$go_emulated" "$go_stage")
    cross-compiled in one native step         $(ms "$go_step")   stage/step = $(ratio "$go_stage" "$go_step")
REPORT
if [ -n "${XBAKE_BENCH_BASELINE:-}" ]; then
  cat <<REPORT
  baseline xbake, 3 emulated platforms, cold  $(ms "$base_cold")   this/baseline = $(ratio "$cold" "$base_cold")
                  fully cached rebuild        $(ms "$base_cached")   this/baseline = $(ratio "$cached" "$base_cached")
REPORT
fi
