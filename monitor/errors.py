"""One exception base class: every error the monitor raises on purpose is a MonitorError."""


class MonitorError(Exception):
    """Base of every error the monitor raises on purpose; its message says what to do."""


class InvalidRecord(MonitorError):
    """A message that does not hold valid scored records (it goes to the dead-letter topic)."""


class StatsError(MonitorError):
    """A statistic asked of data it cannot describe (e.g. histograms of different resolutions)."""


class InfraError(MonitorError):
    """The local broker or Redis could not be started, reached or stopped."""


class NotFound(MonitorError):
    """A model, version, month or file that does not exist."""


class StateLost(MonitorError):
    """Redis lost state this worker had written (flushed, or restarted without persistence).

    ``rebuild`` asks for a new state epoch: every worker then rebuilds from the topic.
    """

    def __init__(self, message: str, rebuild: bool):
        super().__init__(message)
        self.rebuild = rebuild
