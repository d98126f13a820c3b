"""The kernels' disk cache degrades (numba's place, a private temp dir, none), never crashes.

Permissions cannot fake an unwritable directory here (the tests may run as root), so the
unusable places are made of regular files standing where directories should be.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import types
from numba.core import caching

import bridge
import bridge.audio
from bridge.audio import _kernels


def double(values):  # type: ignore[no-untyped-def]
    out = 0.0
    for v in values:
        out += 2.0 * v
    return out


SIGNATURES = [types.float64(types.float64[::1])]


@pytest.fixture
def fresh_cache_state(monkeypatch, tmp_path):
    """Isolate the module's sticky status, numba's CACHE_DIR and the temp dir."""
    monkeypatch.setattr(_kernels, "_status", "numba default")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_private_temp_cache_dir_is_made_private_to_this_user(fresh_cache_state) -> None:
    path = _kernels.private_temp_cache_dir()
    assert path is not None and Path(path).parent == fresh_cache_state
    info = os.lstat(path)
    assert stat.S_ISDIR(info.st_mode) and info.st_mode & 0o077 == 0
    assert info.st_uid == os.getuid()
    assert _kernels.private_temp_cache_dir() == path  # and reused


def test_private_temp_cache_dir_refuses_one_that_others_can_write(fresh_cache_state) -> None:
    path = Path(_kernels.private_temp_cache_dir())
    path.chmod(0o777)
    assert _kernels.private_temp_cache_dir() is None


def test_private_temp_cache_dir_refuses_a_symlink_or_a_file(fresh_cache_state) -> None:
    name = f"voicebridge-numba-{os.getuid()}"
    elsewhere = fresh_cache_state / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (fresh_cache_state / name).symlink_to(elsewhere)
    assert _kernels.private_temp_cache_dir() is None
    (fresh_cache_state / name).unlink()
    (fresh_cache_state / name).write_bytes(b"")
    assert _kernels.private_temp_cache_dir() is None


def test_with_no_numba_cache_place_the_private_temp_dir_is_used(
    fresh_cache_state, monkeypatch
) -> None:
    # Only the NUMBA_CACHE_DIR locator, and no NUMBA_CACHE_DIR: numba's "no locator" error,
    # as for read-only site-packages and no writable home.
    monkeypatch.setattr(numba.config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator")
    with pytest.raises(RuntimeError, match="no locator available"):
        numba.njit(SIGNATURES, cache=True)(double)
    kernel = _kernels.compile_cached(double, SIGNATURES)
    assert kernel(np.arange(4.0)) == 12.0
    assert _kernels.cache_status().startswith("temp dir ")
    cache_dir = Path(numba.config.CACHE_DIR)
    assert cache_dir.parent == fresh_cache_state
    assert any(cache_dir.rglob("*.nbi"))  # the index was written there


def test_with_nowhere_to_cache_it_compiles_without_a_cache(fresh_cache_state, monkeypatch) -> None:
    monkeypatch.setattr(numba.config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator")
    blocked = fresh_cache_state / "not-a-dir"
    blocked.write_bytes(b"")
    monkeypatch.setattr(tempfile, "tempdir", str(blocked))
    kernel = _kernels.compile_cached(double, SIGNATURES)
    assert kernel(np.arange(3.0)) == 6.0
    assert _kernels.cache_status().startswith("disabled (RuntimeError: cannot cache")
    # sticky: later kernels do not try again
    assert _kernels.compile_cached(double, SIGNATURES)(np.ones(2)) == 4.0
    assert _kernels.cache_status().startswith("disabled")


def test_a_cache_that_fails_to_load_falls_back_instead_of_raising(
    fresh_cache_state, monkeypatch
) -> None:
    def broken_load(self, sig, target_context):  # type: ignore[no-untyped-def]
        raise OSError("unreadable cache index")

    monkeypatch.setattr(caching.Cache, "load_overload", broken_load)
    kernel = _kernels.compile_cached(double, SIGNATURES)
    assert kernel(np.ones(5)) == 10.0
    assert _kernels.cache_status().startswith("disabled (OSError: unreadable cache index")


def _import_in_a_locked_down_copy(root: Path) -> list[str]:
    """Import bridge.audio from a copy whose own and whose user's cache dirs are unusable."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NUMBA_", "PYTHON", "XDG_"))
    }
    env.update(
        PYTHONPATH=str(root / "pkg"),
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(root / "file" / "home"),
        XDG_CACHE_HOME=str(root / "file" / "cache"),
        TMPDIR=str(root / "tmp"),
    )
    code = (
        "import base64, bridge.audio, bridge.audio._kernels as k\n"
        "from bridge.audio.resample import KERNELS\n"
        "p = bridge.audio.make_pipeline('pcm16')\n"
        "assert len(p.inbound(base64.b64encode(bytes(160)).decode())) == 1280\n"
        "assert len(p.outbound(base64.b64encode(bytes(960)).decode())) == 1\n"
        "print(k.cache_status())\n"
        "print(sum(KERNELS.upsample.stats.cache_hits.values()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_import_in_a_read_only_install_uses_the_temp_dir_and_warms_it(tmp_path) -> None:
    package = tmp_path / "pkg" / "bridge"
    shutil.copytree(
        Path(bridge.audio.__file__).parent,
        package / "audio",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(Path(bridge.__file__), package / "__init__.py")
    # The audio core's one dependency outside its package: the format type it shares.
    shutil.copy(Path(bridge.__file__).parent / "audio_format.py", package / "audio_format.py")
    (package / "audio" / "__pycache__").write_bytes(b"")  # in-tree cache: impossible
    (tmp_path / "file").write_bytes(b"")  # $HOME and $XDG_CACHE_HOME lie under a file
    (tmp_path / "tmp").mkdir()

    status, hits = _import_in_a_locked_down_copy(tmp_path)
    temp_cache = tmp_path / "tmp" / f"voicebridge-numba-{os.getuid()}"
    assert status.startswith(f"temp dir {temp_cache} (after RuntimeError: cannot cache")
    assert hits == "0" and any(temp_cache.rglob("*.nbi"))

    status, hits = _import_in_a_locked_down_copy(tmp_path)  # a second process: warm
    assert status.startswith("temp dir ") and hits == "1"
