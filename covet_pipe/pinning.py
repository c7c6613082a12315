"""Content-hash pinning: ``PluginConfig(plugin_hashes={NAME: "sha256:HEX"})`` loads a plugin only as pinned.

The hash of an installed plugin package is a sha256 over the files its ``RECORD`` lists (their paths and
contents, in order), leaving out what differs from one install of the same wheel to another: the
installer's own files (``INSTALLER``, ``REQUESTED``, ``direct_url.json``, ``RECORD``), compiled bytecode and
the scripts outside site-packages. A plugin file's hash covers the file (``.py`` or ``.so``) and its
manifest; a package folder's, every file under it but ``__pycache__``. ``covet-pipe plugins --hash``
prints the hashes to pin. Each is checked before the plugin's code runs; a pinned plugin that does not match
fails closed (discovery gives it a stand-in: 503 in its place unless its failure policy is open). A sandboxed
plugin file's pin travels in its SandboxSpec, and the supervisor checks it again before each helper starts.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from pathlib import Path

from packaging.utils import canonicalize_name

from covet_pipe.errors import PluginLoadError
from covet_pipe.manifest import manifest_path

__all__ = ["HASH", "distribution_hash", "path_hash", "check_pin", "pin_for_distribution", "pin_for_path"]

#: the form of a pin
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_PER_INSTALL = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def _feed(digest: "hashlib._Hash", name: str, path: Path) -> None:
    digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(hashlib.sha256(path.read_bytes()).digest())


def distribution_hash(dist: importlib.metadata.Distribution) -> str:
    """``sha256:HEX`` over the RECORD-listed files of an installed distribution.

    :raises PluginLoadError: a listed file is missing or unreadable (the install is damaged).
    """
    digest = hashlib.sha256()
    for entry in sorted(dist.files or [], key=str):
        name = entry.as_posix()
        if name.startswith("..") or "__pycache__" in entry.parts or name.endswith(".pyc"):
            continue
        if entry.parts[0].endswith(".dist-info") and entry.name in _PER_INSTALL:
            continue
        try:
            _feed(digest, name, Path(str(entry.locate())))
        except OSError as exc:
            raise PluginLoadError(f"{dist.metadata['Name']}: cannot hash its installed file {name} "
                                  f"({exc.strerror or exc}); reinstall the package") from None
    return f"sha256:{digest.hexdigest()}"


def path_hash(path: Path) -> str:
    """``sha256:HEX`` of a plugin file with its manifest, or of a package folder's files."""
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.relative_to(path).parts)
        for f in files:
            _feed(digest, f.relative_to(path).as_posix(), f)
    else:
        _feed(digest, path.name, path)
        manifest = manifest_path(path)
        if manifest.is_file():
            _feed(digest, manifest.name, manifest)
    return f"sha256:{digest.hexdigest()}"


def pin_for_distribution(pins: dict[str, str], entry_point: str,
                         dist: importlib.metadata.Distribution | None) -> tuple[str, str] | None:
    """The pin (key, hash) naming an entry point or its distribution, if any."""
    if entry_point in pins:
        return entry_point, pins[entry_point]
    if dist is not None:
        want = canonicalize_name(dist.metadata["Name"] or "")
        for key, value in pins.items():
            if canonicalize_name(key) == want:
                return key, value
    return None


def pin_for_path(pins: dict[str, str], path: Path, name: str | None) -> tuple[str, str] | None:
    """The pin (key, hash) naming a plugin file by its plugin name, its file name's stem or its path."""
    for key in (name, path.name.split(".", 1)[0]):
        if key is not None and key in pins:
            return key, pins[key]
    real = os.path.realpath(path)
    for key, value in pins.items():
        if os.path.realpath(os.path.expanduser(key)) == real:
            return key, value
    return None


def check_pin(pin: tuple[str, str] | None, actual: str, where: str) -> None:
    """Refuse a pinned plugin whose content hash is not the pinned one.

    :raises PluginLoadError: naming the plugin, the pinned and the actual hash, and what to do.
    """
    if pin is None:
        return
    key, expected = pin
    if actual != expected:
        raise PluginLoadError(
            f"{where}: its content hash is {actual}, but plugin_hashes pins {key!r} to {expected}; it was not "
            f"loaded. If you changed or upgraded it on purpose, pin the new hash (covet-pipe plugins --hash "
            f"prints it; covet-pipe serve --pin {key}={actual}); if not, reinstall the release you pinned",
            plugin_name=key, path=where)
