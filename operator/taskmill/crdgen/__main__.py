"""``python -m taskmill.crdgen [--check] [--dir DIR]``: write or verify ``crds/``.

Without ``--check`` it rewrites the CRD files from the models. With
``--check`` it changes nothing and exits 1 when the files differ from the
models, naming each file and showing a short diff (``hack/test`` runs this).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskmill.crdgen import output


def default_directory() -> Path:
    """``crds/`` of the checkout this package is imported from, else of the cwd.

    From a source checkout (``pip install -e``) the module sits at
    ``<root>/operator/taskmill/crdgen/``; an installed wheel has no ``crds/``
    of its own, so the current directory is the only sensible guess.
    """
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "operator").is_dir():
        return root / "crds"
    return Path.cwd() / "crds"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskmill.crdgen",
        description="Generate the Taskmill CRDs from the pydantic models.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the CRD files differ from the models",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="the CRD directory (default: crds/ of this checkout)",
    )
    args = parser.parse_args(argv)
    directory: Path = args.dir or default_directory()

    if args.check:
        problems = output.drift(directory)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            print(
                f"\n{len(problems)} CRD file(s) out of date with the models; "
                "run hack/update-crds.sh (python -m taskmill.crdgen) and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"{directory}: CRDs match the models")
        return 0

    changed = output.write(directory)
    for name in changed:
        print(f"wrote {directory / name}")
    if not changed:
        print(f"{directory}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
