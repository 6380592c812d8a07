"""Run ``python -m MODULE ARGS`` command lines without paying Python's imports for each one.

A :class:`CommandServer` is a Python process started once (this checkout first on its path) that imports torch, MONAI,
Ignite and ``segq_monai`` and then, for each command line it is sent, forks: the child starts a process group of its
own (as a terminal starts a command: ``os.killpg`` stops it and whatever it started), sets its working folder, its
environment (torch's threads from ``OMP_NUM_THREADS``, as a new process reads it), ``sys.argv`` and its standard
streams (appended to one file, as a terminal shows them; stdin from ``/dev/null``) and runs the module as ``python -m`` does (``runpy``, as ``__main__``): ``SystemExit`` gives the exit code, an uncaught
exception goes to ``sys.excepthook`` and exits 1, ``atexit`` handlers run. The child starts from a process that has
run nothing, so each command sees what a new process sees, except that its modules are already imported; the server
never imports :mod:`segq_monai.utils.uncaught` (a bundle config must import it to get the project's message) and
checks that ``sys.excepthook`` is Python's own before each fork.

Measured on the 2-core machine (2026-12-07): ``import monai`` alone takes about 6 s of a new process's time, which the
command lines of a test run then share (:data:`SERVERS`: the bad-input rows, the bundle's, overlay's
and temperature's command lines, the runs that the kill tests kill and rerun).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from segq_testing import REPO

#: the server's source: imports, then one JSON request per line on stdin, one JSON reply per line on stdout
_SERVER = r"""
import atexit, json, os, runpy, sys, traceback
import torch, ignite, monai, monai.bundle, nibabel, segq_monai, segq_monai.__main__
assert "segq_monai.utils.uncaught" not in sys.modules, "the server must not install the project's excepthook"
replies = os.fdopen(os.dup(1), "w")
print(json.dumps({"ready": True}), file=replies, flush=True)
for line in sys.stdin:
    request = json.loads(line)
    assert sys.excepthook is sys.__excepthook__
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            replies.close()
            os.setsid()
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            if "OMP_NUM_THREADS" in os.environ:
                torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", closefd=False, buffering=1)
            sys.stderr = open(2, "w", closefd=False, buffering=1)
            sys.argv = [request["module"], *request["args"]]
            try:
                runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as stop:
                if stop.code is None or isinstance(stop.code, int):
                    code = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr)
            except BaseException:
                sys.excepthook(*sys.exc_info())
            atexit._run_exitfuncs()
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)
    print(json.dumps({"pid": pid}), file=replies, flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), file=replies, flush=True)
"""


class CommandServer:
    """One server process: one command line at a time (:meth:`start`, then :meth:`wait`; a lock keeps threads in
    turn)."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.env = env
        self.process = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.lock = threading.Lock()
        ready = self.process.stdout.readline()
        if json.loads(ready or "{}").get("ready") is not True:
            raise RuntimeError(f"the command server did not start (exit {self.process.poll()})")

    def start(self, module: str, args: list[str], cwd: Path, log: Path, **env: str) -> int:
        """Start ``python -m module args`` in ``cwd`` with this process's environment plus ``env``, in a process group
        of its own; stdout and stderr are appended to ``log``. Returns its pid; :meth:`wait` for its exit code."""
        request = {"module": module, "args": [str(a) for a in args], "cwd": str(cwd), "log": str(log),
                   "env": {**self.env, **env}}  # fmt: skip
        self.lock.acquire()
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            return self._reply()["pid"]
        except BaseException:
            self.lock.release()
            raise

    def wait(self) -> int:
        """The exit code of the command line :meth:`start` started (negative: killed by that signal)."""
        try:
            return self._reply()["status"]
        finally:
            self.lock.release()

    def _reply(self) -> dict:
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the command server stopped (exit {self.process.poll()})")
        return json.loads(reply)

    def close(self) -> None:
        """Stop the server (it holds no state worth an orderly exit)."""
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


class CommandServers:
    """``n`` servers, started by the first command line; :meth:`run` takes a free one, so ``n`` threads run at once."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self.free: queue.SimpleQueue[CommandServer] = queue.SimpleQueue()
        self.started: list[CommandServer] = []
        self.lock = threading.Lock()

    def run(self, argv: list[str], cwd: Path, **env: str) -> tuple[int, str]:
        """``python -m MODULE ...`` (``argv`` = ``["-m", MODULE, ...]``) in ``cwd``: (exit code, stdout and stderr
        as one text, as a terminal shows them; also kept in a ``command_*.log`` file of ``cwd``)."""
        handle, name = tempfile.mkstemp(prefix="command_", suffix=".log", dir=cwd)
        os.close(handle)
        log = Path(name)
        started = self.start(argv, cwd, log, **env)
        return started.wait(), log.read_text()

    def start(self, argv: list[str], cwd: Path, log: Path, **env: str) -> Started:
        """Start ``argv`` as :meth:`run` does, its output appended to ``log``; the command runs in a process group of
        its own (``Started.pid``: kill it with ``os.killpg``), as a terminal starts it."""
        if argv[0] != "-m":
            raise ValueError(f"a command line here runs a module (-m MODULE ...), not {argv[:2]}")
        with self.lock:
            while len(self.started) < self.n:
                self.started.append(CommandServer())
                self.free.put(self.started[-1])
        server = self.free.get()
        try:
            pid = server.start(argv[1], argv[2:], Path(cwd), log, **env)
        except BaseException:
            self.free.put(server)
            raise
        return Started(pid, self, server)

    def close(self) -> None:
        while self.started:
            self.started.pop().close()


class Started:
    """A command line that a server started: ``pid`` (its process group), :meth:`wait` for its exit code."""

    def __init__(self, pid: int, servers: CommandServers, server: CommandServer) -> None:
        self.pid, self.servers, self.server = pid, servers, server
        self.code: int | None = None

    def running(self) -> bool:
        """Whether it still runs (its server reaps it as soon as it ends)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait(self) -> int:
        """Its exit code (negative: killed by that signal); the server is free again after it."""
        if self.code is None:
            try:
                self.code = self.server.wait()
            finally:
                self.servers.free.put(self.server)
        return self.code


#: the test run's two servers (started by its first command line; conftest stops them after the run)
SERVERS = CommandServers(2)
