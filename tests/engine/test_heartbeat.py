"""engine.heartbeat: three signs of life, one name each (a worker process, a job, a socket)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from django.core.cache import cache
from django.utils import timezone

from engine import heartbeat


def test_a_worker_heartbeat_names_its_process_and_goes_with_it(settings):
    settings.WORKER_HEARTBEAT_SECONDS = 30
    queue = "gpu.test-heartbeat@host"
    assert heartbeat.worker_incarnations([queue]) == {queue: None}
    heartbeat.beat_worker(queue)
    assert heartbeat.worker_incarnations([queue]) == {queue: heartbeat.worker_incarnation()}
    heartbeat.stop_worker_heartbeat(queue)  # a clean shutdown drops the key: its sessions move at once
    assert heartbeat.worker_incarnations([queue]) == {queue: None}


def test_a_job_shows_life_by_its_heartbeat_else_its_start():
    now = timezone.now()
    job = SimpleNamespace(heartbeat_at=now - timedelta(seconds=5), started_at=now - timedelta(hours=1))
    assert heartbeat.job_shows_life(job, stale_after=10)
    assert not heartbeat.job_shows_life(job, stale_after=4)
    assert heartbeat.job_shows_life(SimpleNamespace(heartbeat_at=None, started_at=now), stale_after=10)
    assert not heartbeat.job_shows_life(SimpleNamespace(heartbeat_at=None, started_at=None), stale_after=10)


def test_a_socket_says_it_is_alive_for_a_few_watchdog_ticks(settings):
    settings.WORKER_HEARTBEAT_SECONDS = 3
    heartbeat.keep_socket_alive("sock-1")
    assert cache.get(heartbeat.socket_alive_key("sock-1")) is True
    assert heartbeat.socket_alive_seconds() == 5 * heartbeat.watchdog_seconds() == 5.0
