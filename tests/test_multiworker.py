"""catdog.e2e.multiworker: Ray Train's TF_CONFIG set-up, loadable where nothing trains without TensorFlow."""

import pickle
import subprocess
import sys

from catdog.e2e import multiworker


def test_the_backend_config_unpickles_without_tensorflow():
    """Ray Train's controller unpickles the config it is given: Ray's own made it import TensorFlow."""
    probe = ("import pickle, sys; config = pickle.loads(sys.stdin.buffer.read()); "
             "print(config.backend_cls.__name__, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], input=pickle.dumps(multiworker.MultiWorkerConfig()),
                          capture_output=True, timeout=120)
    assert done.stdout.decode().split() == ["MultiWorkerBackend", "False", "False"], done.stderr.decode()[-2000:]

