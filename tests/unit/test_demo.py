"""`monitor demo` runs on its own topics, consumer group and key prefix (never mixing with other runs)."""

from __future__ import annotations

from monitor.settings import Settings


def test_a_demo_run_has_its_own_topics_group_and_key_prefix():
    from monitor.ops.demo import demo_settings

    base = Settings()
    s = demo_settings(base, "ab12")
    names = [s.records_topic, s.outcomes_topic, s.alerts_topic, s.dead_letter_topic, s.notify_dead_letter_topic]
    assert names == ["demo-ab12-records", "demo-ab12-outcomes", "demo-ab12-alerts", "demo-ab12-dead-letter",
                     "demo-ab12-notify-dead-letter"]
    assert (s.consumer_group, s.notify_group, s.key_prefix) == ("demo-ab12", "demo-ab12-notify", "demo-ab12")
    assert s.redis_url == base.redis_url and s.kafka_bootstrap == base.kafka_bootstrap
