"""A run's event log, the centre of the design: the writer that stores a step's events with its
checkpoint and then publishes them, the follower that reads stored events and the live tail
without gaps or duplicates, and retention that prunes finished runs' logs.

The rows themselves are stored by `noukai_server.store` (they share transactions with the lease
queue's fenced writes); this package is everything that gives those rows their meaning.
"""

from noukai_server.eventlog.follower import RunEventFollower
from noukai_server.eventlog.retention import RetentionTask
from noukai_server.eventlog.writer import RunLogWriter

__all__ = ["RetentionTask", "RunEventFollower", "RunLogWriter"]
