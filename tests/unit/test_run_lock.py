import os
import subprocess
import sys
import time

import pytest

from primus.core.errors import PrimusUserError
from primus.core.run_lock import LOCK_NAME, RunDirLock


def test_second_holder_is_refused_then_allowed_after_release(tmp_path):
    first = RunDirLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == str(os.getpid())
    with pytest.raises(PrimusUserError, match=f"is in use by another Primus run \\(pid {os.getpid()}\\)"):
        RunDirLock(tmp_path).acquire()
    first.release()
    with RunDirLock(tmp_path):
        pass


def test_lock_of_a_killed_process_is_free(tmp_path):
    code = f"from primus.core.run_lock import RunDirLock; RunDirLock({str(tmp_path)!r}).acquire(); import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            lock_file = tmp_path / LOCK_NAME
            if lock_file.exists() and lock_file.read_text() == str(proc.pid):
                break
            time.sleep(0.05)
        with pytest.raises(PrimusUserError):
            RunDirLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    RunDirLock(tmp_path).acquire().release()  # SIGKILL left no stale lock
