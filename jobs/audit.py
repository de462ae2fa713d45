"""Entry point for `ray job submit --working-dir . -- python jobs/audit.py OUT --out DIR ...`.

Same options as `catdog audit`; under `ray job submit` (RAY_ADDRESS set) the out-of-fold heads,
the outliers and the near-duplicate search run in Ray tasks on the cluster, the job's driver
holding no vector.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from catdog.commands import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))
