"""Where operator state lives: in the process (default) or in Redis, shared by every replica.

Operator state is what people decide: the tools switched off and the circuits forced open or
closed. With :class:`RedisState` an operator action goes to Redis at once (one atomic script that
also bumps a version counter) and every replica picks it up on its next poll, so it reaches the
fleet within ``poll_interval + timeout`` seconds and outlives any replica. The call path never
waits for Redis: each replica keeps the state in memory (the registry's frozensets and circuits)
and a background thread, ``agentwatch-state``, refreshes it:

- every ``poll_interval`` it reads the version (one ``GET``); only when it changed does it read the
  state itself (one ``MULTI``/``EXEC``: version, disabled tools, circuit actions);
- about once a second it publishes a heartbeat: this replica's circuits, for the fleet view of
  ``GET /admin/circuits``, in a key that expires when the replica goes away; the number of live
  replicas sizes each replica's share of a rate limit while Redis is down;
- it replays operator actions taken while Redis was down, and corrections of rate-limit budgets.

Circuit actions are events, not states: ``open`` holds until a ``close``/``reset``, while a
``close`` closes whatever state each replica's circuit is in (an automatically opened one too).
Each action carries the version at which it was written (``seq``); a replica applies an action
once, and a circuit created later (pipelines are built lazily) starts open if the last action
was ``open``.

Redis down or slow: a command that fails or takes longer than ``timeout`` marks the backend
unavailable (logged once, ``agentwatch.state.shared`` = 0). Replicas keep their last known state;
an operator action applies to the replica that received it and is queued; rate limits fall back to
an in-process budget of ``limit / live replicas``. When Redis answers again (seen by the next
poll), queued actions are written, and a Redis that came back empty (restarted without
persistence) is re-seeded from the replica's state, so a tool switched off stays off.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agentwatch._internal import report_internal_error, reset_in_forked_child
from agentwatch.resilience._config import SharedState, redacted_url, seconds
from agentwatch.resilience._redis import redis_client

if TYPE_CHECKING:
    import redis

__all__ = [
    "CircuitRecord",
    "FleetState",
    "LocalState",
    "RedisState",
    "Scope",
    "StateBackend",
    "StateListener",
    "replica_id",
]

Scope = Literal["fleet", "replica"]
CircuitAction = Literal["open", "close", "reset"]

_log = logging.getLogger("agentwatch")
_HEARTBEAT = 1.0
_REPLICA_TTL = 5.0


def replica_id() -> str:
    """``host/pid/random``: the host is the pod or container name, the random part tells apart two
    processes that got the same pid (pid 1 in every container)."""
    try:
        host = socket.gethostname() or "localhost"
    except OSError:
        host = "localhost"
    return f"{host}/{os.getpid()}/{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class CircuitRecord:
    """The last operator action on one circuit key, fleet-wide."""

    action: CircuitAction
    seq: int
    at: float
    by: str

    def to_json(self) -> dict[str, object]:
        return {"action": self.action, "seq": self.seq, "at": self.at, "by": self.by}

    @classmethod
    def from_json(cls, data: object) -> CircuitRecord | None:
        if not isinstance(data, dict) or data.get("action") not in ("open", "close", "reset"):
            return None
        try:
            return cls(data["action"], int(data["seq"]), float(data["at"]), str(data["by"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class FleetState:
    """The shared operator state at one version."""

    version: int
    disabled: dict[str, dict[str, object]]  # tool -> {"at": unix time, "by": replica}
    circuits: dict[str, CircuitRecord]


class StateListener(Protocol):
    """What a backend drives: the registry."""

    def apply_fleet_state(self, state: FleetState, *, joining: bool) -> None: ...

    def seed_state(self) -> FleetState: ...

    def replica_report(self) -> dict[str, object]: ...


class StateBackend(Protocol):
    kind: str
    replica: str

    @property
    def shared(self) -> bool:
        """True while operator state and rate limits are shared with the fleet."""

    def attach(self, listener: StateListener) -> None: ...

    def stop(self) -> None: ...

    def publish_tool(self, name: str, disabled: bool, apply: Callable[[], None]) -> Scope: ...

    def publish_circuit(
        self, key: str, action: CircuitAction, apply: Callable[[], None], record: Callable[[int], None]
    ) -> Scope: ...

    def fleet_reports(self) -> list[dict[str, object]] | None: ...

    def status(self) -> dict[str, object]: ...


class LocalState:
    """In-process state: every replica has its own (the default)."""

    kind = "memory"

    def __init__(self) -> None:
        self.replica = replica_id()
        reset_in_forked_child(self)

    def _reset_after_fork(self) -> None:
        self.replica = replica_id()

    @property
    def shared(self) -> bool:
        return False

    def attach(self, listener: StateListener) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish_tool(self, name: str, disabled: bool, apply: Callable[[], None]) -> Scope:
        apply()
        return "replica"

    def publish_circuit(
        self, key: str, action: CircuitAction, apply: Callable[[], None], record: Callable[[int], None]
    ) -> Scope:
        apply()
        return "replica"

    def fleet_reports(self) -> list[dict[str, object]] | None:
        return None

    def status(self) -> dict[str, object]:
        return {"backend": "memory", "shared": False, "replica": self.replica}


# -- Redis ---------------------------------------------------------------------------------------

# Every script reads the time from Redis (TIME): the replicas' clocks need not agree.
_WRITE = """
local exists = redis.call('EXISTS', KEYS[1])
if exists == 0 and ARGV[6] == '1' then return -1 end
local v = redis.call('INCR', KEYS[1])
if ARGV[1] == 'tool' then
  if ARGV[3] == 'disable' then
    redis.call('HSET', KEYS[2], ARGV[2], cjson.encode({at = tonumber(ARGV[4]), by = ARGV[5]}))
  else
    redis.call('HDEL', KEYS[2], ARGV[2])
  end
else
  redis.call('HSET', KEYS[3], ARGV[2],
    cjson.encode({action = ARGV[3], seq = v, at = tonumber(ARGV[4]), by = ARGV[5]}))
end
return v
"""

_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
for name, value in pairs(cjson.decode(ARGV[2])) do
  redis.call('HSET', KEYS[2], name, cjson.encode(value))
end
for key, value in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', KEYS[3], key, cjson.encode(value))
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

_HEARTBEAT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]) / 1000)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return redis.call('ZCARD', KEYS[1])
"""


class RedisState:
    """Operator state and rate-limit budgets shared through Redis; see the module docstring."""

    kind = "redis"

    def __init__(self, config: SharedState) -> None:
        import redis

        self.config = config
        self.timeout = seconds(config.timeout)
        self.interval = seconds(config.poll_interval)
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        prefix = config.key_prefix
        self._keys = (f"{prefix}state:version", f"{prefix}state:tools", f"{prefix}state:circuits")
        self._replicas_key = f"{prefix}state:replicas"
        self._replica_prefix = f"{prefix}state:replica:"
        self.rate_prefix = f"{prefix}ratelimit:"
        self.where = redacted_url(config.url)
        self.replica = replica_id()
        self._lock = threading.Lock()
        # Held while an operator action is applied and written, and while a snapshot is applied:
        # a snapshot read before a write landed must not undo that write locally.
        self._write_lock = threading.Lock()
        self._listener: StateListener | None = None
        self._version = 0  # the version of the last snapshot applied (0: none yet)
        # Whether this replica has seen the fleet's state once (an empty Redis counts): until
        # then a snapshot is the state it joins, whose past closes and resets are history.
        self._seen = False
        self._floor = 0  # the version of this replica's last write: older snapshots are stale
        self._pending: dict[tuple[str, str], tuple[str, Callable[[int], None] | None]] = {}
        self._jobs: deque[Callable[[], None]] = deque()
        self._available = False
        self._ever_available = False
        self._reported_down = False
        self._live_replicas = 1
        self._next_heartbeat = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = redis_client(config.url, self.timeout)
        self._register_scripts()
        reset_in_forked_child(self, "_lock", "_write_lock")

    def _register_scripts(self) -> None:
        client = self._client
        # register_script runs EVALSHA and falls back to EVAL when Redis lost its script cache
        # (a restart), so a script is sent in full once per Redis lifetime.
        self._write_script = client.register_script(_WRITE)
        self._seed_script = client.register_script(_SEED)
        self._heartbeat_script = client.register_script(_HEARTBEAT_SCRIPT)

    @property
    def client(self) -> redis.Redis:
        return self._client

    # -- lifecycle ------------------------------------------------------------------------

    def attach(self, listener: StateListener) -> None:
        """Load the shared state once (bounded by ``timeout``), then keep it fresh in the background."""
        self._listener = listener
        self._poll()
        self._start_thread()

    def _start_thread(self) -> None:
        self._stop.clear()
        thread = threading.Thread(target=self._run, name="agentwatch-state", daemon=True)
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        """Stop the poller and leave the fleet view (best effort, bounded by ``timeout``)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + 2 * self.timeout + 1.0)
        self._thread = None
        if self._available:
            try:
                self._client.zrem(self._replicas_key, self.replica)
                self._client.delete(self._replica_prefix + self.replica)
            except self.errors:
                pass
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a client must not fail a shutdown
            pass

    def _reset_after_fork(self) -> None:
        # The child is a replica of its own: its own id, its own connections (the parent's sockets
        # are shared with the parent), and a poller thread, which fork() did not copy.
        self.replica = replica_id()
        self._client = redis_client(self.config.url, self.timeout)
        self._register_scripts()
        self._jobs = deque()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_heartbeat = 0.0
        if self._thread is not None and self._listener is not None:
            self._start_thread()

    # -- status ---------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return self._available

    @property
    def live_replicas(self) -> int:
        """Replicas seen alive at the last heartbeat (at least 1)."""
        return max(1, self._live_replicas)

    def status(self) -> dict[str, object]:
        return {
            "backend": "redis",
            "url": self.where,
            "shared": self._available,
            "replica": self.replica,
            "version": self._version,
            "live_replicas": self.live_replicas,
            "pending_actions": len(self._pending),
        }

    def failed(self, exc: BaseException) -> None:
        """A command failed or timed out: every replica-local decision from now until the poller
        sees Redis answer again. Logged once per outage."""
        with self._lock:
            self._available = False
            first = not self._reported_down
            self._reported_down = True
        if first:
            _log.warning(
                "agentwatch: the shared state at %s is unavailable (%s); this replica goes on with its "
                "local state (operator actions apply to it alone until Redis answers; rate limits use "
                "its share of each budget) and tries again every %g s",
                self.where,
                type(exc).__name__,
                self.interval,
            )

    def _answered(self) -> None:
        with self._lock:
            recovered = self._reported_down
            self._available = True
            self._ever_available = True
            self._reported_down = False
        if recovered:
            _log.warning(
                "agentwatch: the shared state at %s answers again; this replica follows it", self.where
            )

    # -- the poller -----------------------------------------------------------------------

    def _run(self) -> None:
        stop, wake = self._stop, self._wake
        next_poll = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                self._poll()
                next_poll = time.monotonic() + self.interval
            self._run_jobs()
            wake.wait(max(0.0, next_poll - time.monotonic()))
            wake.clear()

    def _poll(self) -> None:
        try:
            with self._write_lock:
                self._replay_pending()
                self._refresh()
            if time.monotonic() >= self._next_heartbeat:
                self._heartbeat()
        except self.errors as exc:
            self.failed(exc)
            return
        except Exception:  # noqa: BLE001 - the poller must survive anything (a corrupt key...)
            report_internal_error("shared state poll")
            return
        self._answered()

    def _refresh(self) -> None:
        raw = self._client.get(self._keys[0])
        if raw is None:
            if self._version > 0 or self._floor > 0:
                # Redis lost the state (restarted empty): put back what this replica knows.
                self._seed()
            self._seen = True
            return
        version = int(raw)
        if version == self._version or version < self._floor:
            return
        pipe = self._client.pipeline(transaction=True)
        pipe.get(self._keys[0])
        pipe.hgetall(self._keys[1])
        pipe.hgetall(self._keys[2])
        raw_version, tools, circuits = pipe.execute()
        state = FleetState(
            version=int(raw_version or 0),
            disabled={_text(k): _decode(v) or {} for k, v in tools.items()},
            circuits={
                _text(k): record
                for k, v in circuits.items()
                if (record := CircuitRecord.from_json(_decode(v))) is not None
            },
        )
        if self._listener is not None:
            self._listener.apply_fleet_state(state, joining=not self._seen)
        self._seen = True
        self._version = state.version

    def _seed(self) -> None:
        if self._listener is None:
            return
        state = self._listener.seed_state()
        version = max(self._version, self._floor) + 1
        seeded = self._seed_script(
            keys=list(self._keys),
            args=[
                version,
                json.dumps(state.disabled),
                json.dumps({k: r.to_json() for k, r in state.circuits.items()}),
            ],
        )
        if seeded:
            _log.warning(
                "agentwatch: the shared state at %s was empty (Redis restarted without its data); this "
                "replica restored it (%d disabled tool(s), %d circuit action(s))",
                self.where,
                len(state.disabled),
                len(state.circuits),
            )
            self._version = version

    def _heartbeat(self) -> None:
        listener = self._listener
        report = listener.replica_report() if listener is not None else {}
        report = {**report, "replica": self.replica, "at": time.time()}
        ttl = int(max(_REPLICA_TTL, 5 * self.interval) * 1000)
        count = self._heartbeat_script(
            keys=[self._replicas_key, self._replica_prefix + self.replica],
            args=[self.replica, json.dumps(report, default=str), ttl],
        )
        self._live_replicas = int(count)
        self._next_heartbeat = time.monotonic() + _HEARTBEAT

    # -- operator actions -----------------------------------------------------------------

    def publish_tool(self, name: str, disabled: bool, apply: Callable[[], None]) -> Scope:
        return self._publish("tool", name, "disable" if disabled else "enable", apply, None)

    def publish_circuit(
        self, key: str, action: CircuitAction, apply: Callable[[], None], record: Callable[[int], None]
    ) -> Scope:
        return self._publish("circuit", key, action, apply, record)

    def _publish(
        self,
        kind: str,
        name: str,
        action: str,
        apply: Callable[[], None],
        record: Callable[[int], None] | None,
    ) -> Scope:
        with self._write_lock:
            apply()
            if not self._available:
                self._queue(kind, name, action, record)
                return "replica"
            try:
                self._write(kind, name, action, record)
            except self.errors as exc:
                self.failed(exc)
                self._queue(kind, name, action, record)
                return "replica"
        return "fleet"

    def _queue(self, kind: str, name: str, action: str, record: Callable[[int], None] | None) -> None:
        # The latest action per tool or circuit wins; re-inserting keeps the order of the actions.
        self._pending.pop((kind, name), None)
        self._pending[(kind, name)] = (action, record)

    def _write(self, kind: str, name: str, action: str, record: Callable[[int], None] | None) -> None:
        has_history = self._version > 0 or self._floor > 0
        args: list[str | float] = [kind, name, action, time.time(), self.replica, "1" if has_history else "0"]
        version = int(self._write_script(keys=list(self._keys), args=args))
        if version < 0:
            self._seed()
            version = int(self._write_script(keys=list(self._keys), args=args))
        self._floor = max(self._floor, version)
        if record is not None:
            record(version)

    def _replay_pending(self) -> None:
        while self._pending:
            (kind, name), (action, record) = next(iter(self._pending.items()))
            self._write(kind, name, action, record)
            del self._pending[(kind, name)]

    # -- background jobs (rate-limit corrections) -----------------------------------------

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the poller thread, soon; it must bound itself by ``timeout``."""
        self._jobs.append(job)
        self._wake.set()

    def _run_jobs(self) -> None:
        jobs = self._jobs
        while jobs:
            try:
                job = jobs.popleft()
            except IndexError:
                return
            try:
                job()
            except self.errors as exc:
                self.failed(exc)
            except Exception:  # noqa: BLE001
                report_internal_error("shared state job")

    # -- the fleet view -------------------------------------------------------------------

    def fleet_reports(self) -> list[dict[str, object]] | None:
        """Every live replica's last heartbeat; ``None`` when Redis does not answer."""
        if not self._available:
            return None
        try:
            ids = [_text(i) for i in self._client.zrange(self._replicas_key, 0, -1)]
            raw = self._client.mget([self._replica_prefix + i for i in ids]) if ids else []
        except self.errors as exc:
            self.failed(exc)
            return None
        reports = []
        for value in raw:
            report = _decode(value)
            if isinstance(report, dict):
                reports.append(report)
        return reports


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _decode(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None
