"""Sandboxed plugins: helper processes confined by rlimits, namespaces, Landlock, capabilities and seccomp."""

from __future__ import annotations

from covet_pipe.sandbox.cgroups import CgroupLimits
from covet_pipe.sandbox.confine import ConfinementError, apply
from covet_pipe.sandbox.policy import SandboxPolicy

__all__ = ["CgroupLimits", "ConfinementError", "SandboxPolicy", "apply"]
