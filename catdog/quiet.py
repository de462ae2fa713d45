"""How much catdog and the libraries it drives say: `--verbose` (CATDOG_VERBOSE=1) shows Ray's INFO
lines; without it Ray's Python loggers are set to ERROR through `ray.init(logging_level=...)`.
Nothing here touches file descriptors, `sys.modules` or other processes.
"""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "CATDOG_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(on: bool) -> None:
    os.environ[VERBOSE_ENV] = "1" if on else "0"


def ray_log_level() -> int:
    return logging.INFO if verbose() else logging.ERROR
