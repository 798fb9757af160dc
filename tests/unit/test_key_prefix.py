"""The key prefix cannot hold a hash tag: the scripts find a model's hash tag as the first ``{...}`` of a
declared key and build its other keys from it, so a ``{`` in the prefix would make every model's join
buffer the same keys."""

from __future__ import annotations

import pydantic
import pytest

from monitor.settings import Settings
from monitor.state.keys import Keys


@pytest.mark.parametrize("prefix", ["cm{prod}", "cm}", "{cm"])
def test_a_prefix_with_braces_is_refused(prefix):
    with pytest.raises(pydantic.ValidationError, match="key_prefix"):
        Settings(key_prefix=prefix)


def test_the_model_hash_tag_is_the_first_braces_of_a_key():
    keys = Keys(Settings(key_prefix="prod:cm").key_prefix)
    key = keys.of("m", "1", "offsets")
    assert key.index("{") == key.index("{m:1}")
