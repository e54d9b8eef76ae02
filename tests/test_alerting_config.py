"""The ``alerting`` section: defaults, a list of receiver mappings, and errors that name the key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from collector.config import ConfigError, config_from_dict

import analytics.slo.alerting_config  # noqa: F401  (registers "alerting")

HOOK = {"name": "oncall", "url": "https://hooks.example.net/fleetwatch"}


def alerting(**section):
    return config_from_dict({"alerting": section}).section("alerting")


def test_defaults_and_a_full_section():
    default = alerting()
    assert default.receivers == [] and default.repeat_interval == 4 * 3600 and default.give_up_after == 3 * 86400
    assert default.lifecycle().pending_for == {"page": timedelta(minutes=2), "ticket": timedelta(minutes=15)}
    assert (default.retry.initial, default.retry.max) == (5, 300)
    config = alerting(receivers=[HOOK, {"name": "am", "url": "http://am:9093", "kind": "alertmanager",
                                        "timeout": "3s"}],
                      pending_for={"page": "1m"}, repeat_interval="1h", retry={"initial": "1s", "max": "10s"},
                      dashboard_url="http://dash:8501/oncall?slo={slo}&{group_query}", max_alerts=5)
    assert [r.name for r in config.receivers] == ["oncall", "am"]
    assert config.receivers[1].post_url == "http://am:9093/api/v2/alerts" and config.receivers[1].timeout == 3
    assert config.receivers[0].post_url == HOOK["url"]
    lifecycle = config.lifecycle()
    assert lifecycle.pending_for["page"] == timedelta(minutes=1) and lifecycle.repeat_interval == timedelta(hours=1)
    assert [config.retry.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    payload = config.payload(config.receivers[1])
    assert payload.receiver == "am" and payload.max_alerts == 5


@pytest.mark.parametrize("section, key", [
    ({"receivers": [{**HOOK, "url": "ftp://hooks.example.net/x"}]}, "alerting.receivers[0].url"),
    ({"receivers": [{**HOOK, "url": "hooks.example.net/x"}]}, "alerting.receivers[0].url"),
    ({"receivers": [{**HOOK, "url": "http://hooks.example.net:99999/x"}]}, "alerting.receivers[0].url"),
    ({"receivers": [HOOK, {**HOOK, "kind": "pagerduty"}]}, "alerting.receivers[1].kind"),
    ({"receivers": [HOOK, HOOK]}, "alerting.receivers[1].name"),
    ({"receivers": [{"url": HOOK["url"]}]}, "alerting.receivers[0].name"),
    ({"receivers": [{**HOOK, "bearer_token": "inline"}]}, "alerting.receivers[0].bearer_token"),
    ({"receivers": [{**HOOK, "bearer_token_file": "/nonexistent/token"}]}, "alerting.receivers[0].bearer_token_file"),
    ({"receivers": [{**HOOK, "bearer_token_env": "FW_NO_SUCH_VARIABLE"}]}, "alerting.receivers[0].bearer_token_env"),
    ({"receivers": [{**HOOK, "timeout": "10"}]}, "alerting.receivers[0].timeout"),
    ({"receivers": [{**HOOK, "ca_file": "/nonexistent/ca.pem"}]}, "alerting.receivers[0].ca_file"),
    ({"receivers": HOOK}, "alerting.receivers"),
    ({"external_url": "fleetwatch:4319"}, "alerting.external_url"),
    ({"dashboard_url": "http://dash/{nope}"}, "alerting.dashboard_url"),
    ({"repeat_interval": "0s"}, "alerting.repeat_interval"),
    ({"pending_for": {"page": "soon"}}, "alerting.pending_for.page"),
    ({"pending_for": {"warning": "1m"}}, "alerting.pending_for.warning"),
    ({"retry": {"initial": "10m", "max": "5m"}}, "alerting.retry"),
    ({"give_up_after": "0s"}, "alerting.give_up_after"),
    ({"max_alerts": -1}, "alerting.max_alerts"),
])
def test_errors_name_the_key(section, key):
    with pytest.raises(ConfigError) as error:
        alerting(**section)
    assert str(error.value).startswith(key), str(error.value)
