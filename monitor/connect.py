"""The one place where Redis and Kafka clients are built, from the settings.

Every client of the product (worker, CLI, API, lag reader, producers, benchmarks, fault runs) comes
from here, so that the Redis password, ACL user and TLS CA (``monitor.security.redis_options``) and the
Kafka security protocol, SASL and TLS (``monitor.security.kafka_options``) apply everywhere. faust's
own clients get the same credentials through ``monitor.security.faust_credentials``.
``tests/unit/test_connect.py`` fails when a module elsewhere builds a client itself.

Secrets never reach a message: ``redact_url`` is what prints a URL.

>>> from monitor.settings import Settings
>>> s = Settings(redis_url="redis://127.0.0.1:1/0", redis_username="svc", redis_password="s3cret")
>>> client = redis_client(s)
>>> kwargs = client.connection_pool.connection_kwargs
>>> kwargs["username"], kwargs["password"], kwargs["port"]
('svc', 's3cret', 1)
>>> "s3cret" in repr(client)
False
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from monitor.security import kafka_options, redis_options
from monitor.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

REDACTED = "***"


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (user, host, port, path kept): what messages show.

    >>> redact_url("redis://u:pw@h:1/0")
    'redis://u:***@h:1/0'
    >>> redact_url("rediss://:pw@h:1")
    'rediss://:***@h:1'
    >>> redact_url("redis://127.0.0.1:16379/0")
    'redis://127.0.0.1:16379/0'
    >>> redact_url("not a url")
    'not a url'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparsable URL: show nothing of what may be a secret after '@'
        return url.rsplit("@", 1)[-1]
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def scrub(text: str, settings: Settings) -> str:
    """``text`` without the settings' secrets: URL passwords redacted, the passwords themselves replaced.

    >>> s = Settings(redis_url="redis://u:pw1@h:1/0", redis_password="pw2", kafka_sasl_password="pw3")
    >>> scrub("at redis://u:pw1@h:1/0: pw2 / pw3 refused", s)
    'at redis://u:***@h:1/0: *** / *** refused'
    """
    text = text.replace(settings.redis_url, redact_url(settings.redis_url))
    secrets = [getattr(settings, name) for name in ("redis_password", "kafka_sasl_password")]
    values = [s.get_secret_value() for s in secrets if s is not None]
    try:
        values.append(urlsplit(settings.redis_url).password)
    except ValueError:
        pass
    for value in filter(None, values):
        text = text.replace(value, REDACTED)
    return text


def redis_error_message(settings: Settings, exc: BaseException) -> str:
    """What to tell the user when Redis could not be reached or refused the credentials: where (the URL
    redacted), why, and which settings to check; never a secret.

    >>> import redis.exceptions as r
    >>> s = Settings(redis_url="redis://u:pw@h:1/0")
    >>> redis_error_message(s, r.AuthenticationError("invalid username-password pair or user is disabled."))
    'Redis at redis://u:***@h:1/0 refused the credentials (AuthenticationError: invalid username-password pair or user is disabled.); check MONITOR_REDIS_USERNAME and MONITOR_REDIS_PASSWORD'
    >>> redis_error_message(s, r.ConnectionError("Error 111 connecting to h:1. Connection refused."))
    'Redis at redis://u:***@h:1/0 not reachable (ConnectionError: Error 111 connecting to h:1. Connection refused.); check MONITOR_REDIS_URL'
    """
    import redis.exceptions

    where = redact_url(settings.redis_url)
    reason = scrub(f"{type(exc).__name__}: {exc}", settings)
    if isinstance(exc, (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError)):
        return (f"Redis at {where} refused the credentials ({reason}); check MONITOR_REDIS_USERNAME and "
                "MONITOR_REDIS_PASSWORD")
    return f"Redis at {where} not reachable ({reason}); check MONITOR_REDIS_URL"


def redis_client(settings: Settings, *, asyncio: bool = False, blocking_pool: int | None = None, **overrides: Any):
    """A Redis client for ``settings.redis_url`` with the settings' password, ACL user and TLS CA.

    ``asyncio``: a ``redis.asyncio.Redis`` instead of a ``redis.Redis``. ``blocking_pool``: at most
    that many connections, a caller waiting (``timeout`` s, override) for a free one instead of failing
    with "Too many connections" (the API). ``overrides``: any other ``from_url`` keyword
    (``socket_timeout``, ``decode_responses``, ...).

    >>> from monitor.settings import Settings
    >>> c = redis_client(Settings(redis_url="redis://h:2/3"), asyncio=True, blocking_pool=4, timeout=1)
    >>> type(c).__module__, type(c.connection_pool).__name__, c.connection_pool.max_connections
    ('redis.asyncio.client', 'BlockingConnectionPool', 4)
    """
    if is_cluster_url(settings.redis_url):
        return cluster_client(settings, asyncio=asyncio, blocking_pool=blocking_pool, **overrides)
    module: ModuleType  # the same names in both: their pool classes differ in type, not in use
    if asyncio:
        import redis.asyncio as async_redis

        module = async_redis
    else:
        import redis as sync_redis

        module = sync_redis
    options: dict[str, Any] = {"socket_connect_timeout": 5, **redis_options(settings), **overrides}
    pool_class = module.ConnectionPool
    if blocking_pool is not None:
        options.setdefault("timeout", 10)
        options["max_connections"] = blocking_pool
        pool_class = module.BlockingConnectionPool
    # from_pool: the client closes its pool when it is closed (as from_url's clients do).
    return module.Redis.from_pool(pool_class.from_url(settings.redis_url, **options))


CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS


def is_cluster_url(url: str) -> bool:
    """Does ``url`` name a Redis Cluster (``redis+cluster://`` or, with TLS, ``rediss+cluster://``)?

    >>> is_cluster_url("redis+cluster://h1:7000,h2:7001"), is_cluster_url("redis://h:6379/0")
    (True, False)
    """
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The startup nodes of a cluster URL and its connection options (user, password, TLS).

    ``redis+cluster://[user:password@]host:port[,host:port...]``; a cluster has one database (0), so
    a path is refused, as is a query (give options through the settings).

    >>> cluster_nodes("rediss+cluster://u:p%40w@h1:7000,h2")
    ([('h1', 7000), ('h2', 6379)], {'ssl': True, 'username': 'u', 'password': 'p@w'})
    >>> cluster_nodes("redis+cluster://h1:7000/1")
    Traceback (most recent call last):
    ...
    monitor.errors.MonitorError: a Redis Cluster URL has no database path or query: redis+cluster://h1:7000/1
    """
    from urllib.parse import unquote

    from monitor.errors import MonitorError

    scheme, rest = url.split("://", 1)
    userinfo, _, hosts = rest.rpartition("@")
    if "/" in hosts.rstrip("/") or "?" in hosts:
        raise MonitorError(f"a Redis Cluster URL has no database path or query: {redact_url(url)}")
    nodes = []
    for address in filter(None, hosts.rstrip("/").split(",")):
        host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
        nodes.append((host, int(port or 6379)))
    options: dict[str, Any] = {"ssl": True} if CLUSTER_SCHEMES[scheme.lower()] else {}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    return nodes, options


def cluster_client(settings: Settings, *, asyncio: bool = False, blocking_pool: int | None = None, **overrides: Any):
    """A ``RedisCluster`` (``redis.asyncio.cluster`` with ``asyncio``) for a ``redis+cluster://`` URL,
    with the same password, ACL user and TLS CA as :func:`redis_client` (the settings win over the URL).

    It follows the slots itself: a key's command goes to the master of its slot, a script call to
    the master of its declared keys' slot (all in one slot: the hash tag ``{model:version}``), a
    failover or resharding is followed on MOVED / ASK. ``blocking_pool`` (the API's bound on
    connections) is not applied: redis-py's cluster client has no blocking pool (it fails with
    MaxConnectionsError past ``max_connections`` per node), so it keeps its default of 100 per node;
    ``timeout`` (the blocking pool's wait) is dropped.

    >>> c = redis_client(Settings(redis_url="redis+cluster://127.0.0.1:1,127.0.0.1:2", redis_password="pw"),
    ...                  asyncio=True)
    >>> type(c).__module__, [(n.host, n.port) for n in c.nodes_manager.startup_nodes.values()]
    ('redis.asyncio.cluster', [('127.0.0.1', 1), ('127.0.0.1', 2)])
    """
    nodes, options = cluster_nodes(settings.redis_url)
    options = {"socket_connect_timeout": 5, **options, **redis_options(settings), **overrides}
    options.pop("timeout", None)  # the blocking pool's wait: not a cluster client option
    if options.get("ssl_ca_certs"):
        options["ssl"] = True
    if asyncio:
        from redis.asyncio.cluster import ClusterNode as AsyncNode
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        return AsyncCluster(startup_nodes=[AsyncNode(h, p) for h, p in nodes], **options)
    from redis.cluster import ClusterNode, RedisCluster

    # The sync client connects at once (it reads the slots); the async one on first use.
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], **options)


def _kafka(settings: Settings, overrides: dict) -> dict:
    return {"bootstrap_servers": settings.kafka_bootstrap, **kafka_options(settings), **overrides}


def kafka_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An aiokafka producer (not started): batched, ``acks=all``; ``overrides`` win.

    >>> import asyncio
    >>> from monitor.settings import Settings
    >>> async def build():  # aiokafka clients are built inside a running loop
    ...     return kafka_producer(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
    ...                                    kafka_sasl_password="pw"))
    >>> p = asyncio.run(build())
    >>> p.client._sasl_plain_username, p.client._security_protocol
    ('u', 'SASL_PLAINTEXT')
    """
    from aiokafka import AIOKafkaProducer

    defaults = {"linger_ms": 5, "max_batch_size": 256 * 1024, "acks": "all", "request_timeout_ms": 30_000}
    return AIOKafkaProducer(**_kafka(settings, {**defaults, **overrides}))


def kafka_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer (not started) of ``topics`` (none: assign later); ``overrides`` win."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, **_kafka(settings, overrides))


def kafka_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client (not started); ``overrides`` win."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**_kafka(settings, {"request_timeout_ms": 10_000, **overrides}))
