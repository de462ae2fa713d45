"""catdog.commands.terminal: the command line drops abseil's INFO lines from Python's sys.stderr and nothing else;
the library leaves the process's stderr alone (every line a thread writes during an extraction arrives)."""

import io
import re
import subprocess
import sys

import pytest

from catdog.commands import terminal

INFO = "I0000 00:00:1796484865.554209    2960 port.cc:153] oneDNN custom operations are on."
BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CUINIT = "E0000 00:00:1796484869.026315    2960 cuda_platform.cc:52] failed call to cuInit: INTERNAL"
ERROR = "E0000 00:00:1796484869.026315    2960 gpu_device.cc:52] Could not load dynamic library libcudnn.so.9"
FATAL = "F0000 00:00:1796484869.026315    2960 cpu_feature_guard.cc:99] The TensorFlow library was compiled to use AVX"


def filtered(*writes: str) -> str:
    sink = io.StringIO()
    f = terminal._InfoFilter(sink)
    for text in writes:
        f.write(text)
    return sink.getvalue()


def test_info_lines_go_and_every_other_line_stays():
    ray = "\x1b[36m(Embedder pid=4242)\x1b[0m "
    # print() as Ray's log forwarding calls it: the line, then its newline, in two writes.
    got = filtered(ray + INFO, "\n", ray + BANNER, "\n", ray + CUINIT, "\n", ray + ERROR, "\n", FATAL + "\n", INFO + "\n",
                   "\rextract:  50%|#####     | 1/2", "\rextract: 100%|##########| 2/2\n", "Traceback (most recent call last):\n")
    assert got == (ray + ERROR + "\n" + FATAL + "\n" + "\rextract:  50%|#####     | 1/2"
                   "\rextract: 100%|##########| 2/2\n" + "Traceback (most recent call last):\n")


def test_verbose_or_outside_the_block_stderr_is_the_real_one():
    real = sys.stderr
    with terminal.info_lines_dropped(enabled=False):
        assert sys.stderr is real
    with terminal.info_lines_dropped():
        assert isinstance(sys.stderr, terminal._InfoFilter)
    assert sys.stderr is real


WRITER = r"""
import os, sys, threading
import catdog
from catdog import synthetic

root = synthetic.make_demo_folder(sys.argv[1] + "/in", per_class=4, size=40)
stop, written = threading.Event(), []
def write():
    n = 0
    while not stop.is_set():
        os.write(2, f"fd-line {n}\n".encode())
        sys.stderr.write(f"py-line {n}\n")  # one write: print() writes the text and its newline apart,
        sys.stderr.flush()                   # and Ray's log thread may print between them
        written.append(n)
        n += 1
        stop.wait(0.02)  # the writer's pace; it ends as soon as the job does
thread = threading.Thread(target=write)
thread.start()
summary = catdog.extract(root, sys.argv[1] + "/out", weights="none", image_size=32, progress=False)
stop.set()
thread.join()
print(len(written), summary.images)
"""


@pytest.mark.slow
def test_a_thread_writing_to_stderr_during_an_extraction_loses_no_line(tmp_path):
    done = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    count, images = map(int, done.stdout.split()[-2:])
    assert images == 8 and count > 20  # the writer ran through Ray's start, the model and the commit
    # Each of these lines is one write, but Ray's log thread prints a line's text and its newline
    # apart, so one of ours may follow another's text on the same line: found by pattern, not as lines.
    lines = set(re.findall(r"(?:fd|py)-line \d+(?=\n)", done.stderr))
    missing = [n for n in range(count) for kind in ("fd", "py") if f"{kind}-line {n}" not in lines]
    assert missing == []
