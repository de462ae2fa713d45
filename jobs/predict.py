"""Entry point for `ray job submit --working-dir . -- python jobs/predict.py MODEL ROOT --out DIR ...`.

Same options as `catdog predict`; with `--out DIR` (not a .csv), the Parquet predictions of ROOT by
the cluster's actors. Under `ray job submit` RAY_ADDRESS is set, so it joins the cluster.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from catdog.commands import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
