"""Live fan-out of run events and worker wake-ups. The event log in the store is the truth; the bus
only makes it fast to hear about new entries."""

from noukai_server.bus.base import Bus, LogEvent, Subscription
from noukai_server.bus.memory import MemoryBus
from noukai_server.bus.redis import RedisBus

__all__ = ["Bus", "LogEvent", "MemoryBus", "RedisBus", "Subscription"]
