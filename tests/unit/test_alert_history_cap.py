"""The alert history's cap is one constant (monitor.state.ALERT_HISTORY_CAP), not a second literal."""

import inspect

from monitor.alerts import lifecycle
from monitor.state import ALERT_HISTORY_CAP


def test_the_evaluator_trims_history_at_the_store_cap():
    assert inspect.signature(lifecycle.AlertEvaluator).parameters["history_cap"].default is ALERT_HISTORY_CAP
    assert "10_000" not in inspect.getsource(lifecycle)
