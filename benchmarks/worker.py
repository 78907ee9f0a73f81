"""Runs the benchmark items for one target inside one interpreter and prints the samples as JSON.

Started by ``run.py`` with the interpreter of the target's virtual environment::

    python benchmarks/worker.py --target agentwatch --items chat,stream_openai --out result.json

Items (see README.md in this folder): ``chat`` (items 1 and 2: floor, bare and instrumented
call, interleaved), ``stream_openai`` / ``stream_anthropic`` (item 3), ``tool`` (item 4),
``memory`` and ``wrapper`` (item 5), ``breakdown`` (what the floor is made of) and ``profile``.
Raw samples go out; run.py summarises them.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import mocks
from harness import Floor, Variant, clock, interleaved, make_signals
from targets import TARGETS, Target

ALL_ITEMS = (
    "chat",
    "stream_openai",
    "stream_anthropic",
    "tool",
    "memory",
    "wrapper",
    "breakdown",
    "decomposition",
    "profile",
)

# Sizes per mode. "quick" keeps every item to a few hundred calls: it checks that the harness
# runs, not how fast anything is.
SIZES: dict[str, dict[str, int]] = {
    "full": {
        # Thousands of short rounds (see README.md, "Method"): a burst of load on the shared
        # machine then spoils a few rounds out of thousands, not a third of a 30-round sample.
        "chat_rounds": 2000,
        "decomposition_rounds": 600,
        "chat_n": 3,
        "warmup": 1,
        "stream_rounds": 16,
        "stream_per_segment": 2,
        "replay_rounds": 30,
        "replay_per_segment": 5,
        "tool_rounds": 1000,
        "tool_n": 50,
        "memory_calls": 100_000,
        "memory_bare_calls": 20_000,
        "memory_warmup": 2_000,
        "memory_streams": 5_000,
        "wrapper_streams": 200,
        "breakdown_rounds": 30,
        "breakdown_n": 2000,
        "profile_calls": 3000,
    },
    "quick": {
        "chat_rounds": 3,
        "decomposition_rounds": 3,
        "chat_n": 10,
        "warmup": 5,
        "stream_rounds": 2,
        "stream_per_segment": 1,
        "replay_rounds": 3,
        "replay_per_segment": 1,
        "tool_rounds": 3,
        "tool_n": 100,
        "memory_calls": 300,
        "memory_bare_calls": 100,
        "memory_warmup": 50,
        "memory_streams": 50,
        "wrapper_streams": 10,
        "breakdown_rounds": 3,
        "breakdown_n": 100,
        "profile_calls": 0,
    },
}

VERSION_DISTRIBUTIONS = (
    "openai",
    "anthropic",
    "httpx",
    "httpx2",
    "pydantic",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "wrapt",
    "pyinstrument",
)


def versions(extra: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in (*extra, *VERSION_DISTRIBUTIONS):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


class Context:
    def __init__(self, target: Target, sizes: dict[str, int]) -> None:
        self.target = target
        self.sizes = sizes
        self.state = "off"

    def on(self) -> None:
        if self.state != "on":
            self.target.on()
            self.state = "on"

    def off(self) -> None:
        if self.state != "off":
            self.target.off()
            self.state = "off"


# -- items 1 and 2: the ideal wrapper, bare call, instrumented call ---------------------------


def item_chat(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    headers: list[str | None] = []
    client = mocks.openai_client(traceparents=headers)
    kwargs = mocks.CHAT_KWARGS
    ideal = harness.Ideal()
    signals = ctx.target.signals

    def call() -> object:
        return client.chat.completions.create(**kwargs)

    # What one call emits: checked, so a peer that silently failed to instrument is noticed.
    ctx.off()
    call()
    signals.clear()
    before = signals.metric_points()
    ctx.on()
    call()
    spans = signals.span_count()
    finished = signals.spans.get_finished_spans()
    attributes = sum(len(span.attributes or {}) for span in finished)
    keys = sorted(finished[0].attributes or {}) if finished else []
    logs = len(signals.logs.get_finished_logs()) if signals.logs is not None else 0
    after = signals.metric_points()
    ctx.off()
    signals.clear()
    call()
    spans_off = signals.span_count()
    if spans < 1 or spans_off != 0:
        raise RuntimeError(f"instrumentation check failed: {spans} spans when on, {spans_off} when off")
    measurements = sum(after.values()) - sum(before.values())
    # And what the ideal emits: one span with the same keys, four records, a traceparent.
    headers.clear()
    ideal.on()
    try:
        call()
    finally:
        ideal.off()
    (ideal_span,) = ideal.signals.spans.get_finished_spans()
    ideal_keys = sorted(ideal_span.attributes or {})
    ideal_measurements = sum(ideal.signals.metric_points().values())
    if ideal_measurements != 4 or not (headers and headers[-1]):
        raise RuntimeError(f"the ideal made {ideal_measurements} records, sent traceparent {headers}")
    ideal.clear()

    def drop() -> None:
        signals.clear()
        ideal.clear()

    samples = interleaved(
        [
            Variant("bare", call, after=drop),
            Variant("ideal", call, enter=ideal.on, leave=ideal.off, after=drop),
            Variant("instrumented", call, enter=ctx.on, leave=ctx.off, after=drop),
        ],
        rounds=s["chat_rounds"],
        n=s["chat_n"],
        warmup=s["warmup"],
    )
    return {
        "samples": samples,
        "spans_per_call": spans,
        "span_attributes_per_call": attributes,
        "first_span_attribute_keys": keys,
        "ideal_span_attribute_keys": ideal_keys,
        "log_records_per_call": logs,
        "measurements_per_call": measurements,
        "metrics": sorted(k for k in after if after[k] != before.get(k, 0)),
    }


# -- item 3: streams ----------------------------------------------------------------------------


@contextmanager
def replayed(stream_cls: type, items: list[Any]) -> Iterator[None]:
    """Streams of ``stream_cls`` yield ``items`` (already parsed) instead of parsing the HTTP body.

    Removes the SDK's ~20-80 µs of parsing per chunk, the noise that hides a 1 µs difference,
    while keeping the SDK's own stream type and iteration protocol (and so every wrapper).
    """
    original = stream_cls.__stream__  # type: ignore[attr-defined]

    def __stream__(self: Any) -> Iterator[Any]:
        yield from items
        self.response.close()

    stream_cls.__stream__ = __stream__  # type: ignore[attr-defined]
    try:
        yield
    finally:
        stream_cls.__stream__ = original  # type: ignore[attr-defined]


def _one_stream(create: Callable[[], Any], chunks: int) -> tuple[float, float, float, float]:
    """(start µs, chunk path µs per chunk, end µs, total µs) of one stream consumed to its end."""
    t0 = clock()
    stream = create()
    t1 = clock()
    it = iter(stream)
    for _ in range(chunks):
        next(it)
    t2 = clock()
    for _ in it:  # the end of the stream: where an instrumentation ends its span
        raise RuntimeError("the stream has more chunks than expected")
    t3 = clock()
    return (t1 - t0) / 1e3, (t2 - t1) / 1e3 / chunks, (t3 - t2) / 1e3, (t3 - t0) / 1e3


def _stream_rounds(
    ctx: Context, create: Callable[[], Any], chunks: int, rounds: int, per_segment: int
) -> dict[str, Any]:
    parts = ("start", "chunk", "end", "total")
    samples: dict[str, dict[str, list[float]]] = {v: {p: [] for p in parts} for v in ("bare", "instrumented")}
    signals = ctx.target.signals
    for r in range(rounds):
        order = ("bare", "instrumented") if r % 2 == 0 else ("instrumented", "bare")
        for variant in order:
            ctx.on() if variant == "instrumented" else ctx.off()
            _one_stream(create, chunks)  # warm-up
            signals.clear()
            gc.collect()
            measured = [_one_stream(create, chunks) for _ in range(per_segment)]
            signals.clear()
            for index, part in enumerate(parts):
                samples[variant][part].append(statistics.median(m[index] for m in measured))
    ctx.off()
    return samples


def _stream_item(ctx: Context, create: Callable[[], Any], stream_cls: type, chunks: int) -> dict[str, Any]:
    s = ctx.sizes
    signals = ctx.target.signals
    ctx.on()
    signals.clear()
    before = signals.metric_points()
    items = list(create())
    spans = signals.span_count()
    after = signals.metric_points()
    ctx.off()
    if len(items) != chunks:
        raise RuntimeError(f"expected {chunks} chunks, got {len(items)}")
    if spans < 1:
        raise RuntimeError("the instrumented stream produced no span")
    e2e = _stream_rounds(ctx, create, chunks, s["stream_rounds"], s["stream_per_segment"])
    with replayed(stream_cls, items):
        replay = _stream_rounds(ctx, create, chunks, s["replay_rounds"], s["replay_per_segment"])
    return {
        "chunks": chunks,
        "spans_per_stream": spans,
        "measurements_per_stream": sum(after.values()) - sum(before.values()),
        "e2e": e2e,
        "replay": replay,
    }


def item_stream_openai(ctx: Context) -> dict[str, Any]:
    import openai

    client = mocks.openai_client()
    kwargs = {**mocks.CHAT_KWARGS, "stream": True}
    result = _stream_item(
        ctx, lambda: client.chat.completions.create(**kwargs), openai.Stream, mocks.STREAM_CHUNKS
    )
    result["record_us"] = _chunk_record_cost(ctx.sizes)
    return result


def item_stream_anthropic(ctx: Context) -> dict[str, Any]:
    import anthropic

    client = mocks.anthropic_client()
    kwargs = {**mocks.ANTHROPIC_KWARGS, "stream": True}
    result = _stream_item(
        ctx, lambda: client.messages.create(**kwargs), anthropic.Stream, mocks.STREAM_CHUNKS
    )
    result["record_us"] = _chunk_record_cost(ctx.sizes)
    return result


def _chunk_record_cost(s: dict[str, int]) -> list[float]:
    """CPU µs of one time_per_output_chunk record (6 attributes), as the stream end makes per chunk."""
    floor = Floor()
    return interleaved(
        [Variant("record", floor.chunk_record)], rounds=s["breakdown_rounds"], n=s["breakdown_n"], warmup=50
    )["record"]


# -- item 4: a tool call through the full policy pipeline ---------------------------------------


def _tool_api() -> tuple[Any, Any] | str:
    """(tool decorator, resilience module) or why they are not available."""
    try:
        import agentwatch
    except ImportError as exc:
        return f"agentwatch not importable: {exc}"
    tool = getattr(agentwatch, "tool", None)
    if tool is None:
        try:
            from agentwatch.tools import tool
        except ImportError as exc:
            return f"agentwatch.tool not available: {exc}"
    try:
        import agentwatch.resilience as resilience
    except ImportError as exc:
        return f"agentwatch.resilience not available: {exc}"
    for name in ("Policy", "Retry", "CircuitBreaker", "Bulkhead"):
        if getattr(agentwatch, name, None) is None and getattr(resilience, name, None) is None:
            return f"agentwatch.{name} not available"
    return tool, resilience


def _api(resilience: Any, name: str) -> Any:
    import agentwatch

    return getattr(agentwatch, name, None) or getattr(resilience, name)


def full_policy(resilience: Any, *, timeouts: bool = True) -> Any:
    """timeout + retry + breaker + bulkhead, each with its ordinary settings."""
    return _api(resilience, "Policy")(
        timeout=30.0 if timeouts else None,
        attempt_timeout=10.0 if timeouts else None,
        retry=_api(resilience, "Retry")(attempts=3),
        breaker=_api(resilience, "CircuitBreaker")(),
        bulkhead=_api(resilience, "Bulkhead")(max_concurrent=16),
    )


def item_tool(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    api = _tool_api()
    if isinstance(api, str):
        return {"available": False, "reason": api}
    tool, resilience = api
    try:
        policy = full_policy(resilience)
    except Exception as exc:  # noqa: BLE001 - the engine is young: report, don't crash the run
        return {"available": False, "reason": f"building the policy failed: {type(exc).__name__}: {exc}"}

    def lookup(city: str, units: str = "metric") -> dict[str, Any]:
        """Current weather for a city."""
        return {"city": city, "temperature": 21.5, "units": units}

    ctx.on()  # tools report to the providers agentwatch.instrument() was given
    signals = ctx.target.signals
    try:
        with_policy = tool(policy=policy)(lookup)
        no_timeouts = tool(name="lookup_no_timeouts", policy=full_policy(resilience, timeouts=False))(lookup)
        plain = tool(name="lookup_plain")(lookup)
        defaults = tool(name="lookup_defaults", policy=_api(resilience, "Policy")())(lookup)
        signals.clear()
        with_policy("Paris")
        finished = signals.spans.get_finished_spans()
        tool_spans = [span for span in finished if span.name.startswith("execute_tool")]
        if not tool_spans:
            raise RuntimeError(
                f"the tool call made no execute_tool span (spans: {[x.name for x in finished]})"
            )
        attributes = dict(tool_spans[0].attributes or {})
        span_count = len(finished)

        from opentelemetry.trace import SpanKind

        tracer = signals.tracer_provider.get_tracer("bench.tool")
        name = tool_spans[0].name
        start_attributes = {k: v for k, v in attributes.items() if k != "gen_ai.tool.call.result.bytes"}

        def bare_span() -> object:
            with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=start_attributes):
                return lookup("Paris")

        def empty_span() -> object:
            with tracer.start_as_current_span(name):
                return lookup("Paris")

        samples = interleaved(
            [
                Variant("raw", lambda: lookup("Paris")),
                Variant("bare_span", bare_span, after=signals.clear),
                Variant("empty_span", empty_span, after=signals.clear),
                Variant("tool_no_policy", lambda: plain("Paris"), after=signals.clear),
                Variant("tool_default_policy", lambda: defaults("Paris"), after=signals.clear),
                Variant("tool_policy_without_timeouts", lambda: no_timeouts("Paris"), after=signals.clear),
                Variant("tool_policy", lambda: with_policy("Paris"), after=signals.clear),
            ],
            rounds=s["tool_rounds"],
            n=s["tool_n"],
            warmup=50,
        )
    except Exception as exc:  # noqa: BLE001
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    finally:
        signals.clear()
        ctx.off()
    return {
        "available": True,
        "samples": samples,
        "spans_per_call": span_count,
        "span_attributes": len(attributes),
        "policy": repr(policy),
    }


# -- item 5: memory -----------------------------------------------------------------------------


def _traced_kib() -> float:
    gc.collect()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 1024


def _top_growth(before: Any, after: Any, limit: int = 8) -> list[dict[str, Any]]:
    stats = after.compare_to(before, "filename")
    rows = []
    for stat in stats[:limit]:
        frame = stat.traceback[0]
        rows.append(
            {"file": _short(frame.filename), "size_diff": stat.size_diff, "count_diff": stat.count_diff}
        )
    return rows


def _growth_phase(label: str, step: Callable[[], object], calls: int, halves: int = 2) -> dict[str, Any]:
    snapshots = [tracemalloc.take_snapshot()]
    sizes = [_traced_kib()]
    per_half = calls // halves
    t0 = time.perf_counter()
    for _ in range(halves):
        for _ in range(per_half):
            step()
        sizes.append(_traced_kib())
        snapshots.append(tracemalloc.take_snapshot())
    growth = [b - a for a, b in itertools.pairwise(sizes)]
    return {
        "label": label,
        "calls": per_half * halves,
        "traced_kib": sizes,
        "growth_kib": growth,
        "bytes_per_call": (sizes[-1] - sizes[0]) * 1024 / (per_half * halves),
        "seconds": time.perf_counter() - t0,
        "top_growth": _top_growth(snapshots[0], snapshots[-1]),
        "agentwatch_growth_bytes": _agentwatch_growth(snapshots[0], snapshots[-1]),
    }


def _agentwatch_growth(before: Any, after: Any) -> int:
    """Net bytes still allocated by agentwatch's own source lines (tracebacks of depth 1)."""
    return sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if "agentwatch" in stat.traceback[0].filename and "benchmarks" not in stat.traceback[0].filename
    )


def item_memory(ctx: Context) -> dict[str, Any]:
    """No growth over many instrumented calls, measured with tracemalloc.

    Spans go to a SimpleSpanProcessor whose exporter drops them: an in-memory exporter would
    keep every span, which is the exporter's memory, not the instrumentation's. Metrics stay in
    the in-memory reader (their aggregation is bounded by the attribute sets, not by the calls).
    """
    target = ctx.target
    # The memory run has its own providers, so the spans of the other items are not counted.
    kept = target.signals
    rebind = getattr(target, "rebind", None)
    ctx.off()
    target.signals = make_signals(span_exporter=harness.DroppingSpanExporter())
    if rebind is not None:
        rebind()  # the instrumentation must report to these providers
    try:
        return _memory(ctx)
    finally:
        ctx.off()
        target.signals = kept
        if rebind is not None:
            rebind()


def _memory(ctx: Context) -> dict[str, Any]:
    import openai

    s = ctx.sizes
    client = mocks.openai_client()
    kwargs = mocks.CHAT_KWARGS
    stream_kwargs = {**mocks.CHAT_KWARGS, "stream": True}
    short = list(client.chat.completions.create(**stream_kwargs))[:10]
    # The SDK's own growth, for comparison: the same calls without instrumentation.
    for _ in range(s["memory_warmup"]):
        client.chat.completions.create(**kwargs)
    gc.collect()
    tracemalloc.start(1)
    try:
        bare = _growth_phase(
            "non-streaming calls without instrumentation (the SDK's own growth)",
            lambda: client.chat.completions.create(**kwargs),
            s["memory_bare_calls"],
        )
    finally:
        tracemalloc.stop()
    ctx.on()
    try:
        for _ in range(s["memory_warmup"]):
            client.chat.completions.create(**kwargs)
        with replayed(openai.Stream, short):
            for _ in range(s["memory_warmup"] // 10):
                list(client.chat.completions.create(**stream_kwargs))
                client.chat.completions.create(**stream_kwargs)
        gc.collect()
        tracemalloc.start(1)
        try:
            chat = _growth_phase(
                "non-streaming calls", lambda: client.chat.completions.create(**kwargs), s["memory_calls"]
            )
            with replayed(openai.Stream, short):
                completed = _growth_phase(
                    "streams read to the end",
                    lambda: list(client.chat.completions.create(**stream_kwargs)),
                    s["memory_streams"],
                )
                abandoned = _growth_phase(
                    "streams dropped unread (ended by the finalizer)",
                    lambda: client.chat.completions.create(**stream_kwargs),
                    s["memory_streams"],
                )
        finally:
            tracemalloc.stop()
    finally:
        ctx.off()
    return {
        "phases": [chat, completed, abandoned],
        "bare": bare,
        "span_exporter": "dropping (SimpleSpanProcessor)",
    }


def item_wrapper(ctx: Context) -> dict[str, Any]:
    """Memory held by one open (unread) stream: instrumented minus bare, over many open streams."""
    s = ctx.sizes
    client = mocks.openai_client()
    kwargs = {**mocks.CHAT_KWARGS, "stream": True}
    count = s["wrapper_streams"]
    result: dict[str, Any] = {"streams": count}

    def held(variant: str) -> float:
        ctx.on() if variant == "instrumented" else ctx.off()
        client.chat.completions.create(**kwargs).close()
        gc.collect()
        tracemalloc.start(1)
        try:
            base = tracemalloc.get_traced_memory()[0]
            streams = [client.chat.completions.create(**kwargs) for _ in range(count)]
            gc.collect()
            size = (tracemalloc.get_traced_memory()[0] - base) / count
        finally:
            tracemalloc.stop()
        for stream in streams:
            stream.close()
        del streams
        gc.collect()
        ctx.target.signals.clear()
        return size

    samples: dict[str, list[float]] = {"bare": [], "instrumented": []}
    for r in range(3):
        for variant in ("bare", "instrumented") if r % 2 == 0 else ("instrumented", "bare"):
            samples[variant].append(held(variant))
    ctx.off()
    result["bytes_per_stream"] = samples
    result["objects"] = _wrapper_objects(ctx, client, kwargs)
    return result


def _wrapper_objects(ctx: Context, client: Any, kwargs: dict[str, Any]) -> dict[str, int]:
    """sys.getsizeof of what agentwatch adds around one open stream (shallow sizes, no shared objects)."""
    ctx.on()
    try:
        stream = client.chat.completions.create(**kwargs)
        sizes: dict[str, int] = {}
        call = getattr(stream, "_self_call", None)
        if call is None:
            return sizes
        sizes["stream proxy (wrapt.ObjectProxy)"] = sys.getsizeof(stream)
        own = getattr(stream, "__dict__", None)
        sizes["InferenceCall (slots)"] = sys.getsizeof(call)
        sizes["request attributes dict"] = sys.getsizeof(call.attributes)
        finalizer = getattr(stream, "_self_finalizer", None)
        if finalizer is not None:
            sizes["weakref.finalize"] = sys.getsizeof(finalizer)
        span = getattr(call, "span", None)
        if span is not None:
            sizes["SDK span object (the span itself)"] = sys.getsizeof(span) + sys.getsizeof(
                getattr(span, "__dict__", {})
            )
        if own is not None and not isinstance(own, type(stream.__wrapped__.__dict__)):
            sizes["proxy __dict__"] = sys.getsizeof(own)
        stream.close()
        return sizes
    finally:
        ctx.off()


# -- where agentwatch's added time goes, in situ ---------------------------------------------------


def item_decomposition(ctx: Context) -> dict[str, Any]:
    """agentwatch's added cost per call, taken apart by switching its parts off inside real calls.

    Uses agentwatch internals (the instrumentor's Telemetry): the histograms replaced by no-op
    ones, the tracer by a no-op tracer, trace-context injection off through the public
    ``propagate_hosts="none"``. What is left with all three off is agentwatch's own Python work
    around the SDK call (wrapper, request/response reading, pricing, context), plus its effect
    on the SDK's caches and garbage collection. Run after the items that use the target's own
    switch: this one leaves agentwatch uninstrumented (the target's recorded patches still switch).
    """
    s = ctx.sizes
    try:
        from opentelemetry.metrics import NoOpHistogram
        from opentelemetry.trace import NoOpTracer

        import agentwatch
        from agentwatch._telemetry._instruments import InferenceInstruments
        from agentwatch.instrumentation.openai import OpenAIInstrumentor
    except ImportError as exc:
        return {"available": False, "reason": f"agentwatch internals moved: {exc}"}
    signals = ctx.target.signals
    client = mocks.openai_client()
    kwargs = mocks.CHAT_KWARGS

    def call() -> object:
        return client.chat.completions.create(**kwargs)

    from targets import PatchToggle

    def toggle(records: bool = True, span: bool = True, propagate: bool = True) -> PatchToggle:
        """agentwatch instrumented with these parts off, as patches to switch on and off."""
        switch = PatchToggle()
        extra = {} if propagate else {"propagate_hosts": "none"}
        agentwatch.instrument(**signals.providers, configure_sdk=False, **extra)
        telemetry = OpenAIInstrumentor()._telemetry
        if not records:
            noop = NoOpHistogram("noop")
            telemetry.instruments = InferenceInstruments(noop, noop, noop, noop, noop)
        if not span:
            telemetry.tracer = NoOpTracer()
        switch.record()
        agentwatch.uninstrument()
        return switch

    try:
        # The target's own patches are taken off through agentwatch's uninstrument() (with them
        # in place, so that it restores the originals); each variant is then recorded once and
        # switched like the peers, so no round pays for instrument().
        ctx.on()
        agentwatch.uninstrument()
        ctx.state = "off"
        switches = {
            "all": toggle(),
            "no_records": toggle(records=False),
            "no_span": toggle(span=False),
            "no_propagation": toggle(propagate=False),
            "python_only": toggle(records=False, span=False, propagate=False),
        }
        samples = interleaved(
            [
                Variant("bare", call, after=signals.clear),
                *(
                    Variant(name, call, enter=switch.on, leave=switch.off, after=signals.clear)
                    for name, switch in switches.items()
                ),
            ],
            rounds=s["decomposition_rounds"],
            n=s["chat_n"],
            warmup=s["warmup"],
        )
    except Exception as exc:  # noqa: BLE001 - internals changed: report, don't fail the run
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    finally:
        signals.clear()
    return {"available": True, "samples": samples}


# -- what the floor is made of ------------------------------------------------------------------


def item_breakdown(ctx: Context) -> dict[str, Any]:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace

    s = ctx.sizes
    floor = Floor()
    span = floor.tracer.start_span("parent")
    headers: dict[str, str] = {}

    def attach_detach() -> None:
        otel_context.detach(otel_context.attach(trace.set_span_in_context(span)))

    def inject() -> None:
        token = otel_context.attach(trace.set_span_in_context(span))
        propagate.inject(headers)
        otel_context.detach(token)

    variants = [
        Variant("floor", floor.call, after=floor.clear),
        Variant("span_only", floor.span_only, after=floor.clear),
        Variant("record_7_attributes", floor.one_record),
        Variant("record_6_attributes", floor.chunk_record),
        Variant("context_attach_detach", attach_detach),
        Variant("attach_inject_detach", inject),
    ]
    return {"samples": interleaved(variants, rounds=s["breakdown_rounds"], n=s["breakdown_n"], warmup=50)}


# -- profiles (pyinstrument) ---------------------------------------------------------------------

_SDK_DIRS = ("/openai/", "/anthropic/", "/httpx/", "/httpx2/", "/httpcore", "/pydantic", "/json/")


class _Node:
    """pyinstrument's frames merged by (function, file, line): one tree for many calls."""

    __slots__ = ("children", "file", "function", "line", "time")

    def __init__(self, function: str, file: str, line: int | None) -> None:
        self.function = function
        self.file = file
        self.line = line
        self.time = 0.0
        self.children: dict[tuple[str, str, int | None], _Node] = {}

    def add(self, frame: Any) -> None:
        self.time += frame.time
        for child in frame.children:
            key = (child.function, child.file_path or "", child.line_no)
            node = self.children.get(key)
            if node is None:
                node = self.children[key] = _Node(child.function, child.file_path or "", child.line_no)
            node.add(child)


def _is_agentwatch(path: str) -> bool:
    return "agentwatch" in path and "benchmarks" not in path


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _render(node: _Node, scale: float, depth: int, lines: list[str], min_us: float, max_depth: int) -> None:
    us = node.time * scale
    if us < min_us or depth > max_depth:
        return
    if (
        depth > 0
        and not _is_agentwatch(node.file)
        and any(d in node.file for d in _SDK_DIRS)
        and node.children
    ):
        lines.append(f"{'  ' * depth}{us:7.2f} µs  [the SDK's own work: {node.function} {_short(node.file)}]")
        return
    where = f"{_short(node.file)}:{node.line}" if node.line else _short(node.file)
    lines.append(f"{'  ' * depth}{us:7.2f} µs  {node.function}  {where}")
    for child in sorted(node.children.values(), key=lambda c: -c.time):
        _render(child, scale, depth + 1, lines, min_us, max_depth)


def _entry_frames(root: Any) -> list[Any]:
    """agentwatch frames whose caller is not agentwatch: where the SDK calls into agentwatch."""
    found: list[Any] = []

    def walk(frame: Any, parent_is_agentwatch: bool) -> None:
        mine = _is_agentwatch(frame.file_path or "")
        if mine and not parent_is_agentwatch:
            found.append(frame)
        for child in frame.children:
            walk(child, mine)

    walk(root, False)
    return found


def _profile(fn: Callable[[], object], calls: int, title: str, after: Callable[[], None]) -> dict[str, Any]:
    """agentwatch's share of ``fn``, from pyinstrument samples, in CPU µs per call.

    The profiler slows everything down; the sampled times are scaled so that the whole call
    costs what it costs unprofiled (measured just before), which keeps the proportions.
    """
    from pyinstrument import Profiler

    for _ in range(min(calls, 200)):
        fn()
    after()
    unprofiled = harness.per_call_us(fn, max(calls // 4, 10))
    after()
    profiler = Profiler(interval=0.0001)
    profiler.start()
    for _ in range(calls):
        fn()
    profiler.stop()
    after()
    session = profiler.last_session
    root = session.root_frame()
    scale = unprofiled / (root.time / calls * 1e6) * 1e6 / calls
    entries: dict[tuple[str, str], _Node] = {}
    for frame in _entry_frames(root):
        key = (frame.function, frame.file_path or "")
        node = entries.get(key)
        if node is None:
            node = entries[key] = _Node(frame.function, frame.file_path or "", frame.line_no)
        node.add(frame)
    lines = [
        f"{title}: {unprofiled:.1f} µs per call unprofiled; agentwatch's frames below",
        f"(pyinstrument, {calls} calls, {session.sample_count} samples, times scaled to the unprofiled call)",
    ]
    for node in sorted(entries.values(), key=lambda n: -n.time):
        _render(node, scale, 0, lines, min_us=max(0.5, unprofiled * 0.0005), max_depth=6)
    return {"title": title, "unprofiled_us": unprofiled, "text": "\n".join(lines)}


def item_profile(ctx: Context) -> dict[str, Any]:
    import openai

    calls = ctx.sizes["profile_calls"]
    if calls <= 0:
        return {"profiles": []}
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return {"profiles": [], "reason": "pyinstrument is not installed in this environment"}
    client = mocks.openai_client()
    kwargs = mocks.CHAT_KWARGS
    signals = ctx.target.signals
    profiles = []
    ctx.on()
    try:
        profiles.append(
            _profile(
                lambda: client.chat.completions.create(**kwargs),
                calls,
                "chat.completions.create",
                signals.clear,
            )
        )
        signals.clear()
        stream_kwargs = {**kwargs, "stream": True}
        items = list(client.chat.completions.create(**stream_kwargs))
        signals.clear()
        with replayed(openai.Stream, items):
            profile = _profile(
                lambda: list(client.chat.completions.create(**stream_kwargs)),
                max(calls // 100, 20),
                f"a {len(items)}-chunk stream (parsed chunks replayed)",
                signals.clear,
            )
        profiles.append(profile)
        signals.clear()
        api = _tool_api()
        if not isinstance(api, str):
            tool, resilience = api

            def lookup(city: str) -> dict[str, Any]:
                return {"city": city}

            fn = tool(policy=full_policy(resilience))(lookup)
            profiles.append(
                _profile(lambda: fn("Paris"), calls * 3, "a tool call through the full policy", signals.clear)
            )
        signals.clear()
    finally:
        ctx.off()
    return {"profiles": profiles}


ITEMS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "chat": item_chat,
    "stream_openai": item_stream_openai,
    "stream_anthropic": item_stream_anthropic,
    "tool": item_tool,
    "memory": item_memory,
    "wrapper": item_wrapper,
    "breakdown": item_breakdown,
    "decomposition": item_decomposition,
    "profile": item_profile,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--items", default=",".join(ALL_ITEMS))
    parser.add_argument("--mode", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    target = TARGETS[args.target]()
    out: dict[str, Any] = {
        "target": target.name,
        "label": target.label,
        "note": target.note,
        "mode": args.mode,
        "python": platform.python_version(),
        "executable": sys.executable,
        "pid": os.getpid(),
        "items": {},
        "errors": {},
    }
    try:
        target.setup()
    except Exception as exc:  # noqa: BLE001 - reported as "not available" by run.py
        out["errors"]["setup"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        items: list[str] = []
    else:
        items = [item for item in args.items.split(",") if item]
    out["versions"] = versions(target.distributions)
    out["patched"] = getattr(target, "patched", None)
    ctx = Context(target, SIZES[args.mode])
    for item in items:
        started = time.perf_counter()
        try:
            out["items"][item] = ITEMS[item](ctx)
            out["items"][item]["seconds"] = time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 - one broken item must not hide the others
            out["errors"][item] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            try:
                ctx.off()
            except Exception:  # noqa: BLE001
                pass
        print(f"[{target.name}] {item}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
