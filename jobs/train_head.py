"""Entry point for `ray job submit --working-dir . -- python jobs/train_head.py OUT --model-dir M ...`.

Same options as `catdog head`; the head trains on the node that runs the job's driver.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from catdog.commands import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["head", *sys.argv[1:]]))
