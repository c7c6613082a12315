"""Run one hostile case in a confined child: ``python -I driver.py '<json spec>'``.

The spec holds the policy (``SandboxPolicy.as_dict()``), the case name and its arguments. The
driver confines itself with covet_pipe.sandbox.confine.apply() exactly as a helper does, then
imports ``cases.py`` from the plugin folder (this one) like a plugin, runs the case, and prints
one JSON line per step: {"layers": ...}, then {"result": ...}. Set "wait": true to wait for a
line on stdin between confinement and the case (the test moves the child into a cgroup then).
"""

import json
import os
import sys


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("ctty") is not None:
        # The test hands in a pty; make it this process's controlling terminal (we are a session
        # leader), so that TIOCSTI on it is allowed by the kernel and only the sandbox can stop it.
        import fcntl
        import termios
        fcntl.ioctl(spec["ctty"], termios.TIOCSCTTY, 0)
    from covet_pipe.sandbox.confine import ConfinementError, apply
    from covet_pipe.sandbox.policy import SandboxPolicy
    try:
        layers = apply(SandboxPolicy.from_dict(spec["policy"]))
    except ConfinementError as exc:
        print(json.dumps({"confinement_error": str(exc), "layer": exc.layer, "layers": exc.report}), flush=True)
        sys.exit(70)
    print(json.dumps({"layers": layers}), flush=True)
    if spec.get("wait"):
        sys.stdin.readline()
    # Like a plugin: imported only now, from the granted plugin folder.
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    mod_spec = importlib.util.spec_from_file_location("hostile_cases", os.path.join(here, "cases.py"))
    cases = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(cases)
    result = getattr(cases, spec["case"])(**spec.get("args", {}))
    print(json.dumps({"result": result}), flush=True)


if __name__ == "__main__":
    main()
