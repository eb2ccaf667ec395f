"""GDAL settings: remote scenes get HTTP timeouts, so a silent server fails a scene, not the run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from geoseg import gdal_settings
from geoseg.gdal_settings import http_timeouts


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL on a local server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/scene.tif"
    server.close()
    for connection in accepted:
        connection.close()


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
