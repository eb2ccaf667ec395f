"""GDAL settings: remote scenes get HTTP timeouts, so a silent server fails a scene, not the run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from geoseg import gdal_settings
from geoseg.gdal_settings import http_timeouts


def test_a_scene_on_a_silent_server_fails_after_the_timeout(silent_server):
    """In a child process, so that a regression fails here instead of hanging the suite."""
    shortened = "g.HTTP_TIMEOUTS.update(GDAL_HTTP_CONNECTTIMEOUT='2', GDAL_HTTP_TIMEOUT='2')"
    code = (
        f"import geoseg.gdal_settings as g; {shortened}; g.http_timeouts(); "
        f"from geoseg.scenes import open_scene; open_scene({silent_server!r})"
    )
    env = {k: v for k, v in os.environ.items() if k not in gdal_settings.HTTP_TIMEOUTS}
    start = time.monotonic()
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode != 0
    assert "SceneError" in child.stderr and "scene.tif" in child.stderr
    assert time.monotonic() - start < 60  # without a timeout, curl waits for good


def test_the_users_own_timeouts_are_kept(monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "600")
    monkeypatch.delenv("GDAL_HTTP_CONNECTTIMEOUT", raising=False)
    http_timeouts()
    assert os.environ["GDAL_HTTP_TIMEOUT"] == "600"
    assert os.environ["GDAL_HTTP_CONNECTTIMEOUT"] == gdal_settings.HTTP_TIMEOUTS["GDAL_HTTP_CONNECTTIMEOUT"]
