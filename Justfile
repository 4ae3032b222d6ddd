# Developer entry points. Start with ./dev (it installs what these need).

set shell := ["bash", "-euo", "pipefail", "-c"]

fixtures := justfile_directory() / "target/fixtures/bases"

# List the recipes.
default:
    @just --list

# Busybox base root filesystems for every architecture (cached downloads); as root, the
# Debian bookworm bases and the amd64 Go toolchain (mmdebstrap, once per machine).
fixtures:
    scripts/fixtures.sh {{fixtures}}

# `fixtures`, plus what only `just bench` uses: the Go toolchains for arm64 and ppc64le
# and the Debian bases for arm/v7 and ppc64le.
bench-fixtures:
    scripts/fixtures.sh {{fixtures}} --bench

# Build the demo recipe for arm, arm64 and ppc64le, then ask each image about its CPU;
# then cross-compile recipes/go-hello.yaml for five CPUs and run each image.
demo: fixtures
    cargo build --release --quiet
    rm -rf recipes/bases && mkdir -p recipes/bases
    cp {{fixtures}}/busybox-*.tar.gz recipes/bases/
    ./target/release/xbake build recipes/hello.yaml --arch arm,arm64,ppc64le -o oci:out/hello --tag 1.0
    @echo
    @echo "== each image, run under its CPU's emulator: its own command, then uname -m =="
    @for p in arm arm64 ppc64le; do \
        printf '%-8s %s | uname -m: %s\n' "$p:" \
            "$(./target/release/xbake run oci:out/hello:1.0 --platform "$p")" \
            "$(./target/release/xbake run oci:out/hello:1.0 --platform "$p" -- uname -m)"; \
    done
    @echo
    @echo "== read back by skopeo =="
    skopeo inspect --raw oci:out/hello:1.0; echo
    @echo
    @echo "== the Kubernetes way: Go cross-compiled natively in a build stage, one small image per CPU =="
    @if [ -f {{fixtures}}/golang-amd64.tar.zst ]; then \
        ln -f {{fixtures}}/golang-amd64.tar.zst recipes/bases/ 2>/dev/null || cp {{fixtures}}/golang-amd64.tar.zst recipes/bases/; \
        ./target/release/xbake build recipes/go-hello.yaml --arch arm/v6,arm/v7,arm64,ppc64le,s390x -o oci:out/go --tag 1 --progress quiet; \
        for p in arm/v6 arm/v7 arm64 ppc64le s390x; do \
            printf '%-8s %s\n' "$p:" "$(./target/release/xbake run oci:out/go:1 --platform "$p")"; \
        done; \
    else \
        echo "skipped: no Go toolchain base ({{fixtures}}/golang-amd64.tar.zst); just fixtures makes it as root (mmdebstrap)"; \
    fi

# Every test: unit tests, then integration tests (as root and as a test user when root).
# `package` first: tests/package.rs checks the Debian package and xbake's own image.
test: fixtures package
    #!/usr/bin/env bash
    set -euo pipefail
    # RUN steps get a private network by default; its helper (slirp4netns) opens
    # /dev/net/tun, which rootless builds (the test user's) can only do when the device
    # is 0666, the kernel's and Debian's default. Some machines (CI images among them)
    # ship it 0600: open it up for the run as root, and put the old mode back after.
    restore=""
    if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ]; then
        mode=$(stat -c %a /dev/net/tun)
        if [ "$mode" != 666 ]; then chmod 0666 /dev/net/tun; restore=$mode; fi
    fi
    trap '[ -z "$restore" ] || chmod "$restore" /dev/net/tun' EXIT
    # The suite needs room: the test binaries, the fixtures unpacked, images built in
    # /tmp. Say how much there is, so "No space left on device" is explained up front.
    for d in target "${TMPDIR:-/tmp}"; do
        free=$(df -Pk "$d" | awk 'NR==2 {print int($4/1048576)}')
        if [ "$free" -lt 8 ]; then
            echo "test: warning: only ${free} GiB free in $d; the suite needs about 8 GiB there" >&2
        fi
    done
    XBAKE_FIXTURES={{fixtures}} cargo test --all-targets -- --test-threads=2

# The Debian package (target/package/xbake_VERSION_amd64.deb, with man pages and shell
# completions; installs cargo-deb if missing) and xbake's own amd64 image, built by
# xbake from ./xbake.yaml (target/package/xbake-image-amd64.tar, an OCI archive).
package: fixtures
    #!/usr/bin/env bash
    set -euo pipefail
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    command -v cargo-deb >/dev/null || cargo install --quiet --locked cargo-deb@3.8.0
    cargo build --release --quiet
    rm -rf target/package && mkdir -p target/package/man target/package/completions
    ./target/release/xbake man --output-dir target/package/man
    ./target/release/xbake completions bash > target/package/completions/xbake.bash
    ./target/release/xbake completions zsh > target/package/completions/_xbake
    ./target/release/xbake completions fish > target/package/completions/xbake.fish
    cargo deb --no-build --quiet --output target/package/
    ./target/release/xbake build --progress quiet --cache-dir target/package-cache \
        -o oci-archive:target/package/xbake-image-amd64.tar:$(./target/release/xbake --version | cut -d' ' -f2)
    # Its cache (the unpacked Debian base's snapshots, ~1 GB) is of no use after: the
    # archive holds the image.
    rm -rf target/package-cache
    ls -l target/package/*.deb target/package/*.tar

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Timings: xbake cold/cached/verify on 3 emulated platforms, beside buildah, umoci and
# skopeo, a Go program compiled emulated vs cross-compiled, and issue 11's Debian apt
# workload on 3 emulated platforms against buildah (installs hyperfine, buildah, umoci,
# skopeo, jq, pigz and time if missing; root). XBAKE_BENCH_ONLY=busybox|go|debian|ci runs one section,
# XBAKE_BENCH_RUNS=N sets the run count of every row (Debian rows: 3 by default).
bench: bench-fixtures
    #!/usr/bin/env bash
    set -euo pipefail
    missing=(); for p in hyperfine buildah umoci skopeo jq pigz; do command -v $p >/dev/null || missing+=($p); done
    [ -x /usr/bin/time ] || missing+=(time)
    if ((${#missing[@]})); then DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; fi
    scripts/bench.sh {{fixtures}}
