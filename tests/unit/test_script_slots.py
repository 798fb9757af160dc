"""Every script call of the state layer declares keys of one cluster slot (issue 18): a cluster
client refuses a call whose keys hash to two slots (and Redis a script that touches two)."""

from __future__ import annotations

import asyncio

import numpy as np
from redis.crc import key_slot

from monitor.settings import Settings
from monitor.state import Store
from monitor.state.store import MonthIncrements


class Recorder:
    """Stands in for redis-py's Script: records the keys of each call."""

    def __init__(self, name: str, calls: list):
        self.name, self.calls = name, calls

    async def __call__(self, keys, args):
        self.calls.append((self.name, list(keys)))
        return {"apply_batch": [1, b"", b""], "apply_outcomes": [1, b"", 0, 0, 0], "transition": 1,
                "reset_source": 1}.get(self.name, 1)


class NullPipeline:
    def __getattr__(self, name):
        return lambda *a, **k: None

    async def execute(self):
        return []


class FakeClient:
    def __init__(self):
        self.calls: list = []

    def register_script(self, text):
        from monitor.state.scripts import SCRIPTS, source

        name = next(n for n in SCRIPTS if source(n) == text)
        return Recorder(name, self.calls)

    def pipeline(self, transaction=False):
        return NullPipeline()

    async def sadd(self, *a):
        return 1

    async def smembers(self, key):
        return {b"2024-01", b"2024-02"}


def test_each_script_call_declares_keys_of_one_slot():
    client = FakeClient()
    store = Store(client, Settings(key_prefix="cm"))
    months = {"2024-01": MonthIncrements(), "2024-02": MonthIncrements(waiting=(["r1"], np.array([3])))}

    async def calls():
        await store.apply_batch("m", "1", {"t:0": (None, 5, "2024-02-01")}, months, "2024-02-01", "e1")
        await store.adopt_model("m", "1", "e0", "e1")
        await store.reset_source("m", "1", "t:0", 5, "fp", b"{}")
        await store.transition_alert("m", "1", "psi|month|2024-01", b"", b"{}", b"{}", 10)
        await store.apply_outcomes("m", "1", 86400, ["r1", 1, 7])
        await store.take_lease("m", "1", "w1", 1000)

    asyncio.run(calls())
    assert {name for name, _ in client.calls} == {"apply_batch", "adopt_epoch", "reset_source", "transition",
                                                   "apply_outcomes", "lease"}
    for name, keys in client.calls:
        assert len({key_slot(k.encode()) for k in keys}) == 1, f"{name} declares keys of several slots: {keys}"
