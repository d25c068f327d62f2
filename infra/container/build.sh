#!/usr/bin/env bash
# Builds the Chorus training image (infra/container/Dockerfile) with the repository root as the
# build context. Needs a Docker engine with BuildKit (Docker 23+ uses it by default).
#
# Usage: infra/container/build.sh [IMAGE:TAG]        default tag: chorus:<git short hash>
# Extra `docker build` arguments come after the tag, e.g.
#   infra/container/build.sh chorus:dev --build-arg CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-devel-ubuntu24.04
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
default_tag="chorus:$(git -C "${repo_root}" rev-parse --short HEAD 2>/dev/null || echo latest)"
tag="${1:-${default_tag}}"
shift || true

exec docker build \
    --file "${repo_root}/infra/container/Dockerfile" \
    --tag "${tag}" \
    "$@" \
    "${repo_root}"
