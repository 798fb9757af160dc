"""A DeprecationWarning raised from our own code fails the tests; one from a library only shows."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("module", ["monitor.worker.engine", "producers.synthetic", "models.registry", "datasets.loaders",
                                    "monitor"])
def test_our_deprecation_warnings_are_errors(module):
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old API", DeprecationWarning, f"{module.replace('.', '/')}.py", 1, module=module)


@pytest.mark.parametrize("module", ["faust.app", "monitoring_tool", "aiokafka.consumer"])
def test_a_library_deprecation_warning_is_not_an_error(module):
    with pytest.warns(DeprecationWarning):
        warnings.warn_explicit("old API", DeprecationWarning, f"{module.replace('.', '/')}.py", 1, module=module)
