"""Alert rule settings: defaults from the environment, a rules file, per-model overrides.

Precedence, lowest first: the built-in defaults, the ``MONITOR_*`` environment variables
(``MONITOR_KS_WARNING``...), the file's ``defaults``, then its ``models`` entries: a model name
applies to every version, ``model:version`` to one version. The file is YAML or TOML, named by
``MONITOR_ALERT_RULES_FILE``::

    defaults:
      psi: {warning: 0.12}
      windows: [month, rolling]
    models:
      default: {auc: {floor: 0.65}}
      "default:2": {ks_adherence: {critical: 0.25}}

>>> cfg = AlertConfig.model_validate({"models": {"m": {"psi": {"warning": 0.2}}}})
>>> cfg.rules_for("m", "1").psi.warning, cfg.rules_for("other", "1").psi.warning
(0.2, 0.1)
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from monitor.errors import MonitorError
from monitor.schema import model_key
from monitor.settings import Settings

Window = Literal["month", "rolling", "cumulative"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KSAdherenceRule(_Frozen):
    enabled: bool = True
    warning: float = Field(0.10, description="D above this (and significant) is a warning")
    critical: float = Field(0.20, description="D above this (and significant) is critical")
    alpha: float = Field(0.05, description="the KS p-value must be below alpha")


class PSIRule(_Frozen):
    enabled: bool = True
    warning: float = 0.10
    critical: float = 0.25


class AUCRule(_Frozen):
    enabled: bool = True
    floor: float = Field(0.60, description="AUC below this is critical")
    max_drop: float = Field(0.05, description="a drop from the reference AUC above this is a warning, "
                                              "above twice this critical, when significant (z > z_drop)")
    z_drop: float = Field(1.96, description="the drop must exceed this many Hanley-McNeil standard errors")
    provisional_z_drop: float = Field(3.09, description="the same, for a provisional verdict on an open month "
                                                        "(one-sided p 0.001: a part of a month, many chances)")
    min_class_records: int = Field(30, description="records of each class before AUC is judged")


class VolumeRule(_Frozen):
    enabled: bool = True
    max_change: float = Field(0.30, description="a closed month further than this share from the mean "
                                                "of the previous closed months fires (so does zero)")
    history_months: int = Field(3, ge=1, description="previous closed months in the mean")


class RuleSet(_Frozen):
    """Every rule's thresholds for one (model, version)."""

    ks_adherence: KSAdherenceRule = KSAdherenceRule()
    psi: PSIRule = PSIRule()
    feature_psi: PSIRule = Field(PSIRule(), description="PSI of each feature against its reference profile")
    auc: AUCRule = AUCRule()
    volume: VolumeRule = VolumeRule()
    min_records: int = Field(500, ge=1, description="records a window needs before AUC, KS or PSI are judged")
    grace_days: int = Field(5, ge=0, description="a month closes when the watermark passes its end + this")
    provisional_min_share: float = Field(
        0.5, ge=0, description="an open month is judged (provisionally) once it holds this share of its expected "
                               "volume, the mean of the volume rule's history months before it")
    windows: tuple[Window, ...] = ("month", "rolling")


class AlertConfig(_Frozen):
    defaults: RuleSet = RuleSet()
    models: dict[str, dict[str, Any]] = {}
    # The engine asks for a model's rules several times per pass; merging and validating them costs
    # ~2 % of the worker's CPU at 2,000 records/s. The config is frozen, so each answer is kept.
    _merged: dict[tuple[str, str], RuleSet] = PrivateAttr(default_factory=dict)

    def rules_for(self, model: str, version: str) -> RuleSet:
        """The defaults overridden by the model's entry, then by its ``model:version`` entry.

        >>> config = AlertConfig(models={"m": {"psi": {"warning": 0.2}}})
        >>> config.rules_for("m", "1").psi.warning, config.rules_for("other", "1").psi.warning
        (0.2, 0.1)
        """
        known = self._merged.get((model, version))
        if known is None:
            known = self._merged[(model, version)] = self._merge(model, version)
        return known

    def _merge(self, model: str, version: str) -> RuleSet:
        merged = self.defaults.model_dump()
        for key in (model, model_key(model, version)):
            if key in self.models:
                merged = _deep_merge(merged, self.models[key])
        try:
            return RuleSet.model_validate(merged)
        except ValidationError as exc:
            raise MonitorError(f"alert rules for {model}:{version}: {exc}") from None


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def defaults_from_settings(settings: Settings) -> dict:
    """The environment's thresholds (``MONITOR_KS_WARNING``...) as a RuleSet dict."""
    s = settings
    return {
        "ks_adherence": {"warning": s.ks_warning, "critical": s.ks_critical, "alpha": s.ks_alpha},
        "psi": {"warning": s.psi_warning, "critical": s.psi_critical},
        "auc": {"floor": s.auc_floor, "min_class_records": s.min_class_records},
        "min_records": s.min_records,
    }


def read_rules_file(path: Path) -> dict:
    if not path.exists():
        raise MonitorError(f"alert rules file not found: {path} (MONITOR_ALERT_RULES_FILE)")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise MonitorError(f"alert rules file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not set(data) <= {"defaults", "models"}:
        raise MonitorError(f"alert rules file {path}: expected the sections 'defaults' and/or 'models'")
    return data


def load_alert_config(settings: Settings) -> AlertConfig:
    """The rules in force: environment, then the rules file (if any)."""
    defaults = defaults_from_settings(settings)
    models: dict = {}
    if settings.alert_rules_file is not None:
        data = read_rules_file(Path(settings.alert_rules_file))
        defaults = _deep_merge(defaults, data.get("defaults") or {})
        models = data.get("models") or {}
    try:
        return AlertConfig.model_validate({"defaults": defaults, "models": models})
    except ValidationError as exc:
        raise MonitorError(f"alert rules: {exc}") from None
