#!/usr/bin/env bash
# Build the pinned promtool (Prometheus' rule checker and rule unit tester)
# from the Go module proxy into Taskmill's asset cache, once, and print its
# path. tests/helm/test_promtool.py runs `promtool check rules` and
# `promtool test rules` on the chart's PrometheusRule when it is there. The
# build is large (the whole Prometheus module graph): minutes, not seconds.
set -euo pipefail

# The Go module version of Prometheus v3.16 (Prometheus tags v3.x.y as v0.3xx.y).
VERSION="${PROMTOOL_VERSION:-v0.316.0}"
cache="${TASKMILL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskmill}"
dest="$cache/assets/promtool-$VERSION"
if [[ ! -x "$dest/promtool" ]]; then
    mkdir -p "$dest"
    echo "building promtool $VERSION (first run only; several minutes)..." >&2
    GOBIN="$dest" go install "github.com/prometheus/prometheus/cmd/promtool@$VERSION"
fi
echo "$dest/promtool"
