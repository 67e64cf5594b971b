#!/usr/bin/env bash
# Regenerate crds/ from the pydantic models (taskmill.models). Run it after
# changing a model; tests/crdgen/test_drift.py fails until you do.
# `hack/update-crds.sh --check` only verifies.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec python -m taskmill.crdgen "$@"
