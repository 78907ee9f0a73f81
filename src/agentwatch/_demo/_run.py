"""``run_demo(options) -> DemoResult``: scripted agent sessions against an embedded fake LLM.

The run instruments the LLM SDKs with the demo's own providers (``agentwatch.instrument(...,
configure_sdk=False)``; no global provider is set) and undoes it at the end, so it must not run in
a process that agentwatch already instruments. Sessions run on daemon worker threads sharing one
client of the SDK of ``options.provider`` (:mod:`agentwatch._demo._provider`). Interrupting the run (``KeyboardInterrupt`` in the calling thread) stops
starting sessions, lets the running ones stop at their next step, and still flushes and returns
what ran.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.sdk.metrics.export import MetricsData

from agentwatch._cli._spans import SpanView
from agentwatch._demo._agent import run_session
from agentwatch._demo._otel import DemoTelemetry, ExportCounts, SessionRecord, check_settings, otlp_endpoint
from agentwatch._demo._plan import FALLBACK_MODEL, TOOL_NAMES, FaultModel, build_plan, plan_digest
from agentwatch._demo._provider import DEFAULT_PROVIDER, DemoProvider, find_provider
from agentwatch._demo._responder import ScriptedResponder
from agentwatch._demo._tools import bound_world
from agentwatch._demo._world import World
from agentwatch.resilience import CircuitBreaker, Policy, Retry

__all__ = ["LLM_POLICY", "DemoOptions", "DemoProgress", "DemoResult", "default_output_path", "run_demo"]

# The main model's policy: transient faults are retried (honouring retry-after), three failed
# requests in a row open its circuit for a second, and the fallback model answers meanwhile. The
# fallback is the OpenAI demo's; other providers' runs name their own (:func:`llm_policy`).
LLM_POLICY = Policy(
    timeout=20.0,
    retry=Retry(attempts=3, backoff=0.05, max_delay=0.5),
    breaker=CircuitBreaker(failure_threshold=3, break_duration=1.0, max_break_duration=2.0),
    fallback_models=(FALLBACK_MODEL,),
)
# How long an interrupted run waits for the sessions in flight to reach their next step.
_DRAIN_SECONDS = 10.0
_POLL = 0.1
# Set by the command line's SIGINT/SIGTERM handlers, next to the KeyboardInterrupt they raise in
# the main thread. That exception can be lost: raised while the main thread runs a weakref
# finalizer or a garbage-collection callback, it is printed as "ignored" and the run goes on.
# The main thread's loops check this flag too, so the stop is never lost.
_stop_requested = threading.Event()


def request_stop() -> None:
    """Ask the running demo to stop, as Ctrl-C does (safe in a signal handler)."""
    _stop_requested.set()


@dataclass(frozen=True, slots=True)
class DemoProgress:
    """Passed to ``DemoOptions.on_progress`` (from worker threads) after each session."""

    done: int
    started: int
    total: int
    outcomes: dict[str, int]
    elapsed: float


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """Settings of one demo run (the ``agentwatch demo`` options, plus knobs for tests and the stack e2e).

    Attributes:
        sessions: agent sessions to run.
        concurrency: sessions running at the same time.
        seed: seeds every session's plan (tools, arguments, faults, token counts).
        fault_rate: ``FaultModel.rate``; ignored when ``faults`` is given.
        faults: the full fault model.
        duration: time budget in seconds: no session starts after it (``None``: run them all).
        arrival_interval: seconds between session starts (0: as fast as ``concurrency`` allows).
        output: the OTLP JSON Lines file; by default one is written only without an OTLP endpoint,
            in :func:`default_output_path`'s directory (the newest few are kept there).
        otlp: export to the OTLP endpoint of the ``OTEL_EXPORTER_OTLP_*`` variables (``None``:
            exactly when one is set).
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` set one.
        keep_sessions: keep one small record per session in the result (trace id, outcome).
        metric_export_millis: export interval of the file/OTLP metric readers (``OTEL_METRIC_EXPORT_INTERVAL`` wins).
        on_progress: called after each session ends, from the worker threads.
        provider: the ``agentwatch demo --provider`` value: the LLM SDK the agent calls
            (:func:`agentwatch._demo._provider.provider_names`).
    """

    provider: str = DEFAULT_PROVIDER
    sessions: int = 30
    concurrency: int = 4
    seed: int = 7
    fault_rate: float = 0.1
    faults: FaultModel | None = None
    duration: float | None = None
    arrival_interval: float = 0.0
    output: Path | None = None
    otlp: bool | None = None
    service_name: str = "agentwatch-demo"
    keep_sessions: bool = False
    metric_export_millis: int | None = None
    on_progress: Callable[[DemoProgress], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str):
            raise ValueError(f"provider must be a string, got {self.provider!r}")
        _positive_int("sessions", self.sessions)
        _positive_int("concurrency", self.concurrency)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.faults is None:
            object.__setattr__(self, "faults", FaultModel(rate=self.fault_rate))
        if self.duration is not None and (
            isinstance(self.duration, bool)
            or not isinstance(self.duration, (int, float))
            or not self.duration > 0
        ):
            raise ValueError(f"duration must be a number of seconds > 0, got {self.duration!r}")
        if isinstance(self.arrival_interval, bool) or not self.arrival_interval >= 0:
            raise ValueError(
                f"arrival_interval must be a number of seconds >= 0, got {self.arrival_interval!r}"
            )

    @property
    def fault_model(self) -> FaultModel:
        assert self.faults is not None  # set in __post_init__
        return self.faults


@dataclass(frozen=True)
class DemoResult:
    """What a run did; ``metrics`` is the SDK's final (cumulative) metric data, the summary's source."""

    options: DemoOptions
    provider_name: str  # gen_ai.provider.name of the run's chat spans
    plan_digest: str
    run_id: str
    planned: int
    started: int
    outcomes: dict[str, int]
    llm_requests: int  # requests the fake LLM server received
    llm_server_errors: tuple[str, ...]  # faults of the scripted responder (a bug, never expected)
    llm_server: str
    metrics: MetricsData | None
    interesting: SessionRecord | None
    interesting_spans: tuple[SpanView, ...]  # every span of the interesting session's trace
    sessions: tuple[SessionRecord, ...]
    output_path: Path | None
    otlp_endpoint: str | None
    service_name: str
    service_instance_id: str
    interrupted: bool
    budget_exhausted: bool
    started_at: float  # epoch seconds: the run began (before the providers and the fake server)
    finished_at: float  # the run ended (after the final flush of every exporter)
    sessions_seconds: float  # from the first session's dispatch to the end of the last one
    exports: dict[str, dict[str, ExportCounts]]  # destination -> signal -> exports and failures

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())

    @property
    def elapsed(self) -> float:
        """The whole run: start-up, the sessions, and the final export."""
        return self.finished_at - self.started_at

    @property
    def failed_exports(self) -> dict[str, dict[str, ExportCounts]]:
        """The destinations and signals for which at least one export failed."""
        return {
            destination: failed
            for destination, signals in self.exports.items()
            if (failed := {signal: counts for signal, counts in signals.items() if counts.failed})
        }


class _Runner:
    def __init__(self, options: DemoOptions, world: World, provider: DemoProvider, run_id: str) -> None:
        self.options = options
        self.world = world
        self.provider = provider
        self.run_id = run_id
        self.jobs: queue.Queue[int | None] = queue.Queue()
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.start = time.monotonic()
        self.ended: float | None = None  # when the workers were all done (or the run was abandoned)
        self.deadline = None if options.duration is None else self.start + options.duration
        self.cut = False
        self.workers: list[threading.Thread] = []
        self.stop_seen = False  # a stop request has been turned into the run's KeyboardInterrupt

    def check_stop(self) -> None:
        """Raise the KeyboardInterrupt of a stop request the main thread has not seen yet."""
        if _stop_requested.is_set() and not self.stop_seen:
            self.stop_seen = True
            raise KeyboardInterrupt

    def session_id(self, index: int) -> str:
        return f"demo-{self.run_id}-{index:04d}"

    def work(self) -> None:
        while True:
            index = self.jobs.get()
            if index is None:
                return
            if self.world.stopping.is_set():
                continue
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.cut = True  # queued before the budget ran out, but not started in time
                continue
            self.world.session_started()
            outcome = run_session(self.provider, self.world.plans[index], self.world, self.session_id(index))
            with self.lock:
                self.outcomes[outcome.outcome] += 1
                progress = DemoProgress(
                    done=sum(self.outcomes.values()),
                    started=self.world.started,
                    total=len(self.world.plans),
                    outcomes=dict(self.outcomes),
                    elapsed=time.monotonic() - self.start,
                )
            callback = self.options.on_progress
            if callback is not None:
                try:
                    callback(progress)
                except Exception:  # noqa: BLE001 - a broken progress display must not stop the run
                    pass

    def dispatch(self) -> None:
        """Queue the sessions, paced, within the budget (``cut`` tells whether it stopped the run)."""
        options = self.options
        deadline = self.deadline
        for number in range(options.concurrency):
            worker = threading.Thread(target=self.work, name=f"agentwatch-demo-{number}", daemon=True)
            worker.start()
            self.workers.append(worker)
        for index in range(options.sessions):
            if options.arrival_interval and index:
                self._wait_until(self.start + index * options.arrival_interval, deadline)
            if self.world.stopping.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                self.cut = True
                break
            # A bounded backlog keeps "started" honest for the budget: a session is queued only
            # when a worker is about to be free.
            while self.jobs.qsize() >= options.concurrency and not self.world.stopping.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.check_stop()
                time.sleep(0.01)
            if deadline is not None and time.monotonic() >= deadline:
                self.cut = True
                break
            self.jobs.put(index)
        for _ in self.workers:
            self.jobs.put(None)

    def _wait_until(self, when: float, deadline: float | None) -> None:
        while not self.world.stopping.is_set():
            self.check_stop()
            now = time.monotonic()
            if now >= when or (deadline is not None and now >= deadline):
                return
            time.sleep(min(_POLL, when - now))

    def join(self, timeout: float | None) -> bool:
        """Wait for the workers (checking often, so that Ctrl-C is noticed); True if all ended."""
        end = None if timeout is None else time.monotonic() + timeout
        for worker in self.workers:
            while worker.is_alive():
                if end is not None and time.monotonic() >= end:
                    return False
                self.check_stop()
                worker.join(_POLL)
        return True


def default_output_path(run_id: str) -> Path:
    """``agentwatch-demo-<date>-<time>-<run id>.jsonl`` in the user's cache directory (or a temporary
    one when that cannot be created), after removing all but the newest of the earlier files there:
    the demo never writes into the working directory unless told to with ``output``."""
    from agentwatch._cli._common import DEMO_FILES_KEPT, demo_files, demo_output_dir, fallback_demo_output_dir

    name = f"agentwatch-demo-{time.strftime('%Y%m%d-%H%M%S')}-{run_id}.jsonl"
    for directory in (demo_output_dir(), fallback_demo_output_dir()):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(directory, os.W_OK):
            continue
        for old in demo_files(directory)[DEMO_FILES_KEPT - 1 :]:
            try:
                old.unlink()
            except OSError:
                pass  # another run removed it, or it is not ours to remove: leave it
        return directory / name
    raise RuntimeError(
        f"cannot create {demo_output_dir()} or {fallback_demo_output_dir()} for the telemetry file; "
        "give one with --output"
    )


def llm_policy(adapter: type[DemoProvider]) -> Policy:
    """:data:`LLM_POLICY` (read when the run starts) with the provider's fallback model."""
    if LLM_POLICY.fallback_models == (adapter.fallback_model,):
        return LLM_POLICY
    return dataclasses.replace(LLM_POLICY, fallback_models=(adapter.fallback_model,))


def _reset_circuits(adapter: type[DemoProvider]) -> None:
    """Circuits live in the process-wide registry: a second run in one process starts them closed."""
    from agentwatch.resilience import circuit

    models = (adapter.main_model, adapter.fallback_model)
    for key in (*TOOL_NAMES, *(f"{adapter.provider_name}:{model}" for model in models)):
        found = circuit(key)
        if found is not None:
            found.reset()


_LOOPBACK = ("127.0.0.1", "localhost")


@contextmanager
def _loopback_without_proxy() -> Iterator[None]:
    """Requests to the embedded fake LLM (on 127.0.0.1) never go through a proxy from the environment.

    The SDKs' HTTP clients (httpx, aiohttp, requests, botocore) honour ``HTTP(S)_PROXY`` and
    ``ALL_PROXY``, and a proxy cannot reach this process's loopback: with one set, every session
    failed. They all honour ``NO_PROXY`` too, so the loopback names are added to it for the run.
    """
    names = ("NO_PROXY", "no_proxy")
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        given = [h for h in (saved[name] or "").split(",") if h.strip()]
        os.environ[name] = ",".join([*given, *(h for h in _LOOPBACK if h not in given)])
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(options: DemoOptions | None = None) -> DemoResult:
    """Run the demo; see :class:`DemoOptions`. Raises ``ValueError``/``ConfigError`` for bad settings
    (:class:`~agentwatch._demo._provider.ProviderUnavailable` for an unknown provider or one whose
    SDK is not installed) and ``RuntimeError`` when the process is already instrumented or another
    run is going on."""
    from agentwatch import instrument, uninstrument
    from agentwatch._config import resolve_settings
    from agentwatch._fakellm import FakeLLMServer
    from agentwatch._telemetry import _core
    from agentwatch.resilience import _telemetry as resilience_telemetry

    options = options or DemoOptions()
    _stop_requested.clear()
    entry, adapter = find_provider(options.provider)
    if entry.integration.instrumentor().is_instrumented_by_opentelemetry:
        raise RuntimeError(
            f"the {adapter.sdk} SDK is already instrumented in this process; the demo instruments "
            "it with its own providers, so run it in a process of its own (agentwatch demo)"
        )
    llm_policies = {adapter.main_model: llm_policy(adapter)}
    # A bad agentwatch or OTel setting in the environment fails here, before any file is created.
    resolve_settings(llm_policies=llm_policies)
    check_settings()
    faults = options.fault_model
    plans = build_plan(options.seed, options.sessions, faults)
    use_otlp = otlp_endpoint() is not None if options.otlp is None else options.otlp
    run_id = uuid.uuid4().hex[:6]
    output = options.output
    if output is None and not use_otlp:
        output = default_output_path(run_id)
    world = World(plans, faults)
    telemetry = DemoTelemetry(
        service_name=options.service_name,
        output_path=output,
        use_otlp=use_otlp,
        keep_sessions=options.keep_sessions,
        metric_export_millis=options.metric_export_millis,
    )
    previous_default = dict(_core._default_kwargs)
    previous_resilience = resilience_telemetry._current
    started_at = time.time()
    interrupted = cut = False
    server = FakeLLMServer(responder=ScriptedResponder(world, adapter.wire_model(adapter.main_model)))
    metrics: MetricsData | None = None
    runner: _Runner | None = None
    llm_server = ""
    try:
        with bound_world(world), _loopback_without_proxy():
            _reset_circuits(adapter)
            instrument(
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                logger_provider=telemetry.logger_provider,
                configure_sdk=False,
                llm_policies=llm_policies,
            )
            try:
                server.start()
                llm_server = server.url
                provider = adapter(server)
                try:
                    runner = _Runner(options, world, provider, run_id)
                    try:
                        runner.dispatch()
                        runner.join(None)
                        runner.ended = time.monotonic()
                    except KeyboardInterrupt:
                        interrupted = True
                        runner.stop_seen = True  # the drain below waits; a second Ctrl-C cuts it
                        world.stopping.set()
                        # The dispatcher may have been cut before it told the workers to finish.
                        for _ in runner.workers:
                            runner.jobs.put(None)
                        try:
                            runner.join(_DRAIN_SECONDS)
                        except KeyboardInterrupt:
                            pass  # a second Ctrl-C: stop waiting; what ended is still exported
                        runner.ended = time.monotonic()
                finally:
                    # Whatever ended the run: an adapter gives back what it changed (LiteLLM's
                    # hidden environment variables).
                    provider.close()
            finally:
                world.stopping.set()
                server.stop()
                uninstrument()
    finally:
        metrics = telemetry.close()
        _core.set_default_telemetry(**previous_default)
        resilience_telemetry._current = previous_resilience
    outcomes: dict[str, int] = {}
    sessions_seconds = 0.0
    if runner is not None:
        cut = runner.cut
        sessions_seconds = (runner.ended or time.monotonic()) - runner.start
        with runner.lock:
            outcomes = dict(runner.outcomes)
    return DemoResult(
        options=options,
        provider_name=adapter.provider_name,
        plan_digest=plan_digest(plans),
        run_id=run_id,
        planned=len(plans),
        started=world.started,
        outcomes=outcomes,
        llm_requests=len(server.requests),
        llm_server_errors=tuple(server.errors),
        llm_server=llm_server,
        metrics=metrics,
        interesting=telemetry.tracker.interesting,
        interesting_spans=telemetry.tracker.interesting_spans,
        sessions=telemetry.tracker.records,
        output_path=output,
        otlp_endpoint=telemetry.otlp_endpoint,
        service_name=telemetry.service_name,
        service_instance_id=telemetry.service_instance_id,
        interrupted=interrupted,
        budget_exhausted=cut,
        started_at=started_at,
        finished_at=time.time(),
        sessions_seconds=sessions_seconds,
        exports=telemetry.exports,
    )
