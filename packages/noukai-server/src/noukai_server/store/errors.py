"""Exceptions raised by the store.

```
StoreError
├── NotFoundError (LookupError)
│   ├── FlowNotFound
│   ├── RunNotFound
│   └── ThreadNotFound
├── ThreadExpired
├── LeaseLost
├── RunBusy
├── ThreadBusy
├── IdempotencyConflict
├── StoreBusy
├── EventSequenceError (ValueError)
├── InvalidIdentifier (ValueError)
├── UnsupportedDatabase (ValueError)
└── SchemaMismatch
```
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class NotFoundError(StoreError, LookupError):
    """A write addressed a row that does not exist: the caller's mistake (or a race with a delete)."""


class FlowNotFound(NotFoundError):
    """No flow has this id."""


class RunNotFound(NotFoundError):
    """No run has this id."""


class ThreadNotFound(NotFoundError):
    """No thread has this id in the tenant that asked (another tenant's thread is not found)."""


class ThreadExpired(StoreError):
    """The thread outlived its TTL: it answers as gone until retention erases it."""


class ThreadBusy(StoreError):
    """The thread already has an active run, and the new turn asked not to wait (`reject`), or
    the thread was to be deleted while a run is active."""

    def __init__(self, message: str, active_run_id: str | None) -> None:
        super().__init__(message)
        self.active_run_id = active_run_id


class StoreBusy(StoreError):
    """No database connection came free within the pool's timeout: more requests at once than
    the process's pool serves (`[store] pool_size`, `pool_overflow`). Nothing was done; the
    request can be sent again."""


class LeaseLost(StoreError):
    """A worker wrote to a run it no longer holds: the fencing token (`attempt`) is stale.

    Not a bug in the worker: its lease expired (a long pause, a network partition) and the run was
    claimed again, released, or cancelled. The worker must drop the run without writing anything;
    nothing of the rejected call was written.
    """


class IdempotencyConflict(StoreError):
    """The idempotency key is still remembered for a run made by a different request (another
    flow, version or inputs): replaying that run would answer a request nobody sent."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunBusy(StoreError):
    """The API tried to write to a run that a worker is executing (status `running`).

    Only the worker holding the lease may write to a running run; the API should ask it to stop
    (`request_cancel`) instead.
    """


class EventSequenceError(StoreError, ValueError):
    """Event seqs were not strictly increasing and contiguous from the run's `last_seq + 1`.

    Always a bug in the caller (two writers for one run, or a lost event); nothing was written.
    """


class InvalidIdentifier(StoreError, ValueError):
    """An org, project or flow slug (or worker id) was empty or longer than its column allows."""


class UnsupportedDatabase(StoreError, ValueError):
    """The database URL names a database or driver the store does not support."""


class SchemaMismatch(StoreError):
    """The database schema is not at the revision this code expects.

    Raised by `Store.connect(url, migrate=False)`: run the migrations (`noukai migrate`, or connect
    once with `migrate=True`) before starting processes that do not migrate.
    """
