#!/usr/bin/env bash
# The same as github-actions.yml without a CI service: run `build PLATFORM` on one
# machine per platform (natively where you have one), collect the digest files, then
# `merge` once. IMAGE is the repository (host[:port]/name), TAG the tag to publish.
#
#   IMAGE=registry:5000/app ./build-and-merge.sh build linux/arm64    # on the arm64 machine
#   IMAGE=registry:5000/app ./build-and-merge.sh build linux/amd64    # on the amd64 machine
#   IMAGE=registry:5000/app TAG=1.0 ./build-and-merge.sh merge digests/*
set -euo pipefail
: "${IMAGE:?set IMAGE to the repository, host[:port]/name}"
case ${1:-} in
  build)
    platform=${2:?build needs a platform, e.g. linux/arm64}
    xbake doctor --arch "$platform"
    mkdir -p digests
    cache="type=registry,ref=$IMAGE:buildcache-$(echo "$platform" | tr / -)"
    xbake build xbake.yaml --arch "$platform" --cache-from "$cache" --cache-to "$cache,mode=max" \
      --push-by-digest "$IMAGE" --progress plain > "digests/$(echo "$platform" | tr / -)"
    echo "digest of $platform: $(cat "digests/$(echo "$platform" | tr / -)")"
    ;;
  merge)
    shift
    (($#)) || { echo "merge needs the digest files" >&2; exit 2; }
    sources=()
    for f in "$@"; do sources+=("$IMAGE@$(cat "$f")"); done
    xbake manifest create --target "$IMAGE:${TAG:?set TAG}" "${sources[@]}"
    ;;
  *)
    echo "usage: $0 build PLATFORM | merge DIGEST_FILE..." >&2
    exit 2
    ;;
esac
