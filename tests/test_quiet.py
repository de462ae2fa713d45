"""catdog.quiet: file descriptor 2 filtered and silenced from two threads at once, then restored;
Keras loaded without the extras it would import for nothing."""

import subprocess
import sys

import pytest

from catdog import quiet

SCRIPT = r"""
import os, threading
from catdog import quiet

os.write(2, b"before\n")
entered, leave = threading.Event(), threading.Event()


def tensorflow_import():  # as catdog.extract makes the weights while Ray starts: the two overlap
    with quiet.native_stderr_silenced():
        entered.set()
        leave.wait()
        os.write(2, b"absl chatter while silenced\n")


worker = threading.Thread(target=tensorflow_import)
worker.start()
entered.wait()
with quiet.ray_native_lines_dropped():
    leave.set()
    worker.join()
    os.write(2, b"[2026-11-29 23:18:50,985 E 1 1] core_worker.cc:2465: Actor with class name: 'X' has constructor "
                b"arguments in the object store and max_restarts > 0. If ...\n")
    os.write(2, b"\rextract:  50%|#####     | 1/2")
    os.write(2, b"\rextract: 100%|##########| 2/2\n")
os.write(2, b"after\n")
"""


def test_filter_and_silence_from_two_threads_restore_stderr():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60, env={"CATDOG_VERBOSE": "0"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"before\n\rextract:  50%|#####     | 1/2\rextract: 100%|##########| 2/2\nafter\n"


def test_verbose_keeps_every_line():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60, env={"CATDOG_VERBOSE": "1"})
    assert b"constructor arguments in the object store" in done.stderr and b"absl chatter" in done.stderr


def test_not_importable_only_inside_the_block(tmp_path, monkeypatch):
    (tmp_path / "probe_extra.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    already = sys.modules["json"]
    with quiet._not_importable(("probe_extra", "json")):
        with pytest.raises(ImportError):
            import probe_extra  # noqa: F401
        import json  # imported before the block: untouched
        assert json is already
    import probe_extra

    assert probe_extra.VALUE == 7


LOAD = r"""
import sys

import pytest

from catdog import quiet
from catdog import quiet
quiet.load_tensorflow()
import keras
print(sorted(n for n in ("matplotlib", "sklearn") if n in sys.modules))
import matplotlib.pyplot, sklearn.linear_model
print(keras.applications.VGG16.__name__)
"""


@pytest.mark.slow
def test_tensorflow_loads_without_keras_extras_which_import_afterwards():
    done = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "VGG16"]
