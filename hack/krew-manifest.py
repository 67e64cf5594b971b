#!/usr/bin/env python3
"""Render krew/taskmill.yaml (a krew-release-bot template) for one release.

    hack/krew-manifest.py --tag v0.1.0 --archives dist/ > taskmill.yaml

Replaces ``{{ .TagName }}`` with the tag and each
``{{addURIAndSha "URL" .TagName }}`` with ``uri: URL`` and the sha256 of the
archive of the same file name in ``--archives``, the way the bot does from the
release's assets: a local check that the manifest is complete before a release.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "krew" / "taskmill.yaml"
URI_AND_SHA = re.compile(
    r'^(?P<indent> *)\{\{\s*addURIAndSha\s+"(?P<url>[^"]+)"\s+\.TagName\s*\}\}$'
)
TAG = re.compile(r"\{\{\s*\.TagName\s*\}\}")


def render(template: str, tag: str, archives: Path) -> str:
    lines = []
    for line in template.splitlines():
        match = URI_AND_SHA.match(line)
        if match is None:
            lines.append(TAG.sub(tag, line))
            continue
        url = TAG.sub(tag, match["url"])
        archive = archives / url.rsplit("/", 1)[1]
        if not archive.is_file():
            raise SystemExit(f"error: {archive} not found (the archive for {url})")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        lines.append(f"{match['indent']}uri: {url}")
        lines.append(f"{match['indent']}sha256: {digest}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="The release tag, e.g. v0.1.0.")
    parser.add_argument("--archives", required=True, type=Path, help="Directory of the archives.")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    args = parser.parse_args()
    sys.stdout.write(render(args.template.read_text(), args.tag, args.archives))


if __name__ == "__main__":
    main()
