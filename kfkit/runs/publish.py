"""Upload compiled pipeline templates to Artifact Registry (Cloud Build's publish step).

    python -m kfkit.runs.publish --host https://REGION-kfp.pkg.dev/PROJECT/REPO --tag COMMIT --tag BRANCH
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def tag_value(tag: str) -> str:
    """Artifact Registry tags: letters, digits, '-', '_' and '.'; branch names often hold '/'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tag)[:128]


def main(argv: list[str] | None = None, client=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kfkit.runs.publish", description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--tag", action="append", default=[])
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    templates = sorted((Path(args.build_dir) / "pipelines").glob("*.yaml"))
    if not templates:
        print(f"no templates under {args.build_dir}/pipelines: run ci/compile.sh first", file=sys.stderr)
        return 1
    tags = [tag_value(t) for t in args.tag]
    for template in templates:
        if args.dry_run:
            print(f"would upload {template} to {args.host} with tags {', '.join(tags)}")
            continue
        from kfkit.adapters.kfp_backend import upload_template

        result = upload_template(template, args.host, tags, f"kfkit {template.stem}", client=client)
        print(f"uploaded {template.name}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
