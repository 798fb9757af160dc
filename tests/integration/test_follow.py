"""`monitor alerts --follow` stops when told to: Ctrl-C (SIGINT) at any moment, while the consumer starts,
joins its throwaway group or waits for events, ends it with exit status 0. In CI it once ran on for over
30 s after a Ctrl-C (the cancellation lost while the consumer started), so the signal now sets a stop event."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from monitor.alerts.follow import follow_alerts
from monitor.ops.infra import create_topics
from monitor.ops.processes import settings_env


async def test_a_stop_ends_the_follower_while_its_group_join_is_under_way(settings):
    await create_topics(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(follow_alerts(settings, lambda event: None, stop=stop))
    await asyncio.sleep(0.5)  # the consumer is starting or joining its group
    stop.set()
    await asyncio.wait_for(task, 30)  # a bound on waiting, not a timing: it returns, without an error


@pytest.mark.parametrize("after_s", [1.0, 2.5, 6.0])
async def test_ctrl_c_ends_monitor_alerts_follow(settings, after_s):
    await create_topics(settings)
    proc = subprocess.Popen(["monitor", "alerts", "--follow"], env=settings_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        await asyncio.sleep(after_s)
        proc.send_signal(signal.SIGINT)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=60)  # a bound on waiting
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # 0 once the subscription runs; 130 when the Ctrl-C came while the program was still loading (seconds
    # on a busy machine): the conventional status of an interrupted command, and still no traceback
    assert proc.returncode in (0, 130), output.decode()[-2000:]
    assert b"Traceback" not in output and b"Aborted" not in output


async def test_ctrl_c_ends_monitor_alerts_follow_while_events_arrive(settings):
    """As in the README run: events printed, then Ctrl-C."""
    import orjson

    from monitor.connect import kafka_producer

    await create_topics(settings)
    event = {"event_id": "e", "alert_id": "m:1:month:2024-04:auc", "model": "m", "model_version": "1",
             "window": "month", "month": "2024-04", "rule": "auc", "severity": "critical", "status": "firing",
             "phase": "final", "value": 0.53, "threshold": 0.6, "n": 3000, "message": "AUC below the floor",
             "emitted_at": "2026-11-30T12:00:00+00:00", "event_time": "2024-04-30"}
    producer = kafka_producer(settings)
    await producer.start()
    proc = subprocess.Popen(["monitor", "alerts", "--follow"], env=settings_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(40):  # 8 s of events, 5 a second
            await producer.send_and_wait(settings.alerts_topic, orjson.dumps(event))
            await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=60)  # a bound on waiting
    finally:
        await producer.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output.decode()[-2000:]
