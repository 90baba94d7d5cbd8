"""`flywheel inspect DATASET`: what a LeRobot dataset holds and what its folder lacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipelines.dataset import DatasetError, LeRobotDataset


def main(argv: Sequence[str] | None = None, prog: str = "flywheel inspect") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("dataset", help="LeRobot v2.1 or v3.0 dataset folder")
    args = p.parse_args(argv)
    try:
        ds = LeRobotDataset(args.dataset)
    except DatasetError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print(ds.summary())
    for name, feat in ds.features.items():
        print(f"  {name}: {feat.get('dtype')} {feat.get('shape')}")
    for i, text in sorted(ds.tasks.items()):
        print(f"  task {i}: {text}")
    missing = ds.missing()
    if missing:
        print("missing from the folder:")
        for line in missing.lines():
            print(f"  {line}")
    else:
        print("every file the metadata lists is present")
    return 0


if __name__ == "__main__":
    from pipelines.cluster import exit_process

    exit_process(main(prog="python -m pipelines.inspect"))
