"""The `prefixproof` executable: Ctrl-C is handled from the first instruction, before anything heavy is imported.

Ctrl-C at any moment (imports included) ends the run with exit status 130 and one line on stderr, never a
traceback. Worker processes forked by a command leave quietly; the main process reports.
"""
import os
import signal
import sys

_MAIN_PID = os.getpid()
LINE = "prefixproof: interrupted"
reported = False  # set once the one line has been written


def _interrupt(signum, frame):  # noqa: ARG001 - the signal module's signature
    global reported
    if os.getpid() != _MAIN_PID:  # a forked worker: the main process says it
        os._exit(130)
    signal.signal(signal.SIGINT, _hard_exit)  # a second Ctrl-C during clean-up ends at once
    if not reported:
        reported = True
        os.write(2, (LINE + "\n").encode())
    raise KeyboardInterrupt


def _hard_exit(signum, frame):  # noqa: ARG001
    os._exit(130)


def run() -> None:
    """Console-script entry point (setup.cfg) and `python -m prefixproof`."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGINT, _interrupt)
    try:
        from prefixproof.cli import main

        code = main()
    except KeyboardInterrupt:  # during the imports above; `main` handles its own
        code = 130
        if not reported:
            sys.stderr.write(LINE + "\n")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # shutting down: nothing left to interrupt
    sys.exit(code)


if __name__ == "__main__":
    run()
