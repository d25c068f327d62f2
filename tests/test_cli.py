"""The ``chorus`` console script: installed entry point, help and version."""
import os
import subprocess
import sys

import chorus


def _chorus(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "chorus")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def test_version_matches_package():
    res = _chorus("version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == chorus.__version__


def test_help_lists_commands():
    res = _chorus("--help")
    assert res.returncode == 0, res.stderr
    assert "version" in res.stdout


def test_unknown_command_fails_clearly():
    res = _chorus("frobnicate")
    assert res.returncode != 0
    assert "frobnicate" in res.stderr


def test_platform_is_not_shadowed():
    import platform

    assert hasattr(platform, "python_version")  # the standard library module, not our source root
