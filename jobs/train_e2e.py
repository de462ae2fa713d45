"""Entry point for `ray job submit --working-dir . -- python jobs/train_e2e.py ROOT --out RUN ...`.

Same options as `catdog train-e2e`; Ray Train places the workers on the cluster.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from catdog.commands import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train-e2e", *sys.argv[1:]]))
