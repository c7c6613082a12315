"""A sandboxed middleware that turns on the host when a request's path asks it to.

Every attack runs inside the helper's confinement: the host must answer 503 (or skip the plugin when
failure_policy is "open"), kill or restart the helper, and keep serving.
"""

import ctypes
import os
import sys
import threading
import time

from covet_pipe import MiddlewareAction, MiddlewarePlugin, Response


def _ipc_fd():
    # The helper is started as `python -I -m covet_pipe.sandbox.helper_main FD`.
    return int(sys.argv[1])


class Hostile(MiddlewarePlugin):
    name = "hostile"
    version = "0.6.6"
    priority = 10

    def __init__(self, config):
        self.failure_policy = config.get("failure_policy", "closed")
        self.armed = False

    def process_request(self, request, ctx):
        path = request.path
        if path == "/segv":
            ctypes.string_at(0)
        elif path == "/exit":
            os._exit(1)
        elif path == "/closefd":
            os.close(_ipc_fd())
            time.sleep(30)                       # and linger: the host must end it
        elif path == "/garbage":
            os.write(_ipc_fd(), b"\x00\x00\x00\x06\xc1\xc1\xc1\xc1\xc1\xc1")   # 0xc1: never valid msgpack
            time.sleep(30)
        elif path == "/hugelen":
            os.write(_ipc_fd(), b"\xff\xff\xff\xff")
            time.sleep(30)
        elif path == "/crlf":
            # A header value that would split the HTTP response: the host refuses the reply.
            return MiddlewareAction.respond(Response(200, [(b"x-evil", b"a\r\nset-cookie: pwned=1")], b"hi"))
        elif path == "/sleep":
            time.sleep(float(request.headers.get("x-sleep", "5")))
        elif path == "/slow-then-die":
            # Many requests are in flight when the helper dies: a timer ends it mid-call.
            if not self.armed:
                self.armed = True
                threading.Timer(float(request.headers.get("x-die-after", "0.4")), os._exit, (7,)).start()
            time.sleep(3)
        elif path == "/exec":
            os.execv("/bin/sh", ["sh", "-c", "echo escaped"])
        elif path == "/ptrace":
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall(101, 0, 0, 0, 0)        # ptrace(PTRACE_TRACEME): on the kill list
        elif path == "/raise":
            raise RuntimeError("a plain bug in the plugin")
        request.headers.set("x-seen", "hostile-passed")
        return None

    def process_response(self, response, ctx):
        response.headers.set("x-hostile-pid", str(os.getpid()))


def create_plugin(config):
    return Hostile(config)
