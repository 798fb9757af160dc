"""Credentials for Kafka and Redis, from the settings, in the form each client takes.

Secrets are pydantic ``SecretStr``: printed as ``**********`` in any repr or log line, and
revealed only here, when a client is built.

>>> from monitor.settings import Settings
>>> s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc",
...              kafka_sasl_password="s3cret", redis_password="s3cret")
>>> "s3cret" in repr(s)
False
>>> opts = kafka_options(s)
>>> opts["security_protocol"], opts["sasl_plain_username"], opts["sasl_plain_password"]
('SASL_PLAINTEXT', 'svc', 's3cret')
"""

from __future__ import annotations

import ssl

from monitor.settings import Settings


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(str(settings.kafka_ssl_certfile),
                                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None)
    return context


def kafka_options(settings: Settings) -> dict:
    """Keyword arguments for aiokafka clients (producer, consumer, admin)."""
    protocol = settings.kafka_security_protocol
    options: dict = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value()
                       if settings.kafka_sasl_password else None)
    return options


def faust_credentials(settings: Settings):
    """faust's ``broker_credentials`` (None for PLAINTEXT)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(settings))
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
    context = _ssl_context(settings) if protocol == "SASL_SSL" else None
    if settings.kafka_sasl_mechanism == "PLAIN":
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=password, ssl_context=context)
    from faust.types.auth import SASLMechanism

    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=password, ssl_context=context,
                                 mechanism=SASLMechanism(settings.kafka_sasl_mechanism))


def redis_options(settings: Settings) -> dict:
    """Keyword arguments for ``redis.Redis.from_url`` (sync or asyncio)."""
    options: dict = {}
    if settings.redis_password:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_ssl_ca_certs:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_certs)
    return options
