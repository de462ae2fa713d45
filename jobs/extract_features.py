"""Entry point for `ray job submit --working-dir . -- python jobs/extract_features.py ROOT --out OUT ...`.

Same options as `catdog extract`; under `ray job submit` RAY_ADDRESS is set, so it joins the cluster.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from catdog.commands import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
