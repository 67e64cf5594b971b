#!/usr/bin/env bash
# Re-pin docker/constraints.txt: the runtime dependency closure of taskmill
# as installed in .venv (run after changing [project] dependencies).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
python - > docker/constraints.txt <<'PY'
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

seen: dict[str, str] = {}


def walk(name: str) -> None:
    key = canonicalize_name(name)
    if key in seen:
        return
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return
    seen[key] = dist.version
    for raw in dist.requires or []:
        req = Requirement(raw)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        walk(req.name)


walk("taskmill")
seen.pop("taskmill")
print("# Runtime dependencies of the image, pinned (constraints for `pip wheel`).")
print("# Regenerate from a fresh venv of this checkout with hack/update-constraints.sh.")
print("\n".join(f"{k}=={v}" for k, v in sorted(seen.items())))
PY
