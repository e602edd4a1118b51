"""Run a command's ``cli(argv)`` (train.py, demo.py) in this process, as a
subprocess would run it, for the bad-input tests: an interpreter per check
costs 1.5-3 CPU s of imports (chainer, cv2), a call costs milliseconds.

What the command changes for the rest of the process (chainer's dtype,
the BLAS / OpenCV / Winograd thread counts, NumPy's global generator, the
working directory, signal handlers) is put back afterwards, so one check
cannot leak into the next. One subprocess test per command still proves
the end to end path ("one line, no traceback" from a real interpreter)."""
import contextlib
import io
import os
import signal
import subprocess

import chainer
import cv2
import numpy
from threadpoolctl import threadpool_limits

from functions import winograd


@contextlib.contextmanager
def restored_process_state():
    """Undo, on exit, what a command may change process-wide."""
    dtype = chainer.global_config.dtype
    workers = winograd._Workers.count
    cv2_threads = cv2.getNumThreads()
    rng = numpy.random.get_state()
    cwd = os.getcwd()
    handlers = {s: signal.getsignal(s) for s in (
        signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        with threadpool_limits(limits=None):  # restores BLAS's on exit
            yield
    finally:
        chainer.global_config.dtype = dtype
        winograd._Workers.count = workers
        cv2.setNumThreads(cv2_threads)
        numpy.random.set_state(rng)
        os.chdir(cwd)
        for s, handler in handlers.items():
            signal.signal(s, handler)


def run_cli(cli, args, cwd=None):
    """``cli([str(a) for a in args])`` with stdout and stderr captured, in
    ``cwd`` if given; returns a ``subprocess.CompletedProcess`` with the
    exit status (0 when it returns) and the captured text."""
    out, err = io.StringIO(), io.StringIO()
    status = 0
    with restored_process_state(), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        if cwd is not None:
            os.chdir(str(cwd))
        try:
            cli([str(a) for a in args])
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                status = e.code or 0
            else:  # sys.exit('message')
                status = 1
                print(e.code, file=err)
    return subprocess.CompletedProcess(args, status, out.getvalue(),
                                       err.getvalue())
