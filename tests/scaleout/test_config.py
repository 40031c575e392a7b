"""The scale-out configuration files agree with each other (no servers needed): deploy/haproxy.cfg is
valid as docker compose uses it and as scripts/scaleout.py renders it, and docker-compose.yml has
the shape the README describes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.scaleout import HAPROXY_CFG, render_haproxy

ROOT = Path(__file__).resolve().parents[2]
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")


@needs_haproxy
def test_the_compose_haproxy_configuration_is_valid():
    result = subprocess.run([HAPROXY, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_haproxy
def test_the_local_rendering_is_valid_and_names_each_process(tmp_path):
    config = render_haproxy("127.0.0.1:18000", [("web1", "127.0.0.1", 18001), ("web2", "127.0.0.1", 18002)], served_by=True)
    assert "bind 127.0.0.1:18000" in config and "resolvers" not in config
    assert re.findall(r"^\s*server (\S+) 127\.0\.0\.1:(\d+)", config, flags=re.M) == [("web1", "18001"), ("web2", "18002")]
    assert "balance leastconn" in config and "timeout tunnel" in config  # the compose file's settings, kept
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    result = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_runs_the_same_shape():
    text = (ROOT / "docker-compose.yml").read_text()
    services = re.findall(r"^  ([a-z]+):$", text.split("\nservices:\n", 1)[1].split("\nvolumes:\n", 1)[0], flags=re.M)
    assert services == ["postgres", "redis", "migrate", "web", "worker", "haproxy"]
    # Batch runs: a worker service of its own; the Daphne processes start none.
    assert '["python", "manage.py", "batch_worker"]' in text and "replicas: ${WORKER_REPLICAS:-2}" in text
    assert 'BATCH_WORKER: "False"' in text
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in text
    assert '"playground.serve"' in text and '"--proxy-headers"' in text  # the launcher, behind the proxy
    assert "replicas: ${WEB_REPLICAS:-2}" in text and "REDIS_URL: redis://redis:6379/0" in text
    assert "server-template web 1-8 web:8000" in HAPROXY_CFG.read_text()  # every replica, through Docker's DNS
