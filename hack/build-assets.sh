#!/usr/bin/env bash
# Pre-build the local control plane's pinned binaries (kube-apiserver,
# kube-controller-manager, etcd; `--helm` adds helm) into the cache and print
# their paths. Builds happen on first use anyway; this just does it up front,
# e.g. in a CI image. See operator/taskmill/testing/assets.py.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec python -m taskmill.testing.assets "$@"
