"""The command line the photo benchmarks share: measure a photo folder and save the results, or
print a saved run's table again (`--table`)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Callable


def main(measure: Callable[[str], dict], table: Callable[[dict], str], default_json: str, photos_help: str) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", nargs="?", help=photos_help)
    parser.add_argument("--json", default=default_json)
    parser.add_argument("--table", metavar="RESULTS_JSON")
    args = parser.parse_args()
    if args.table:
        print(table(json.load(open(args.table))))
        return
    if not args.photos:
        parser.error("give the photo folder")
    r = measure(os.path.abspath(args.photos))
    with open(args.json, "w") as f:
        json.dump(r, f, indent=2)
    print(table(r))
