"""The seeded script of a demo run: what each session asks, which tools the model calls, which faults hit.

Every session's plan is drawn from its own ``random.Random(f"{seed}:{index}")``, so a plan depends on
the seed and the session's index only: not on how many sessions run, on their concurrency or on the
order in which the fake server receives requests. Faults that depend on *time* (the optional
tool's outage window, the main model's brownout, which calls a circuit breaker rejects) are not in
the plan: they come from :class:`~agentwatch._demo._world.World` while the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "AGENT_NAME",
    "FALLBACK_MODEL",
    "LLM_FAULT_MIX",
    "MAIN_MODEL",
    "MAX_ITERATIONS",
    "TOOL_NAMES",
    "FaultModel",
    "LLMFault",
    "PlannedCall",
    "SessionPlan",
    "Turn",
    "build_plan",
    "plan_digest",
]

AGENT_NAME = "support-agent"
MAIN_MODEL = "gpt-4o-mini"
FALLBACK_MODEL = "gpt-4.1-mini"
# An agent loop typically caps at around 8 LLM calls (the iterations alert fires at p95 >= 7).
MAX_ITERATIONS = 8

SEARCH = "search_knowledge_base"
PREFERENCES = "get_user_preferences"
RELATED = "fetch_related_content"
TOOL_NAMES = (SEARCH, PREFERENCES, RELATED)

LLMFaultKind = Literal["rate_limit", "server_error", "exhausted", "bad_request"]

# Shares of the LLM fault kinds among faulty turns: most faults are transient and absorbed by a
# retry; some exhaust the main model (fallback model answers); a few are unrecoverable requests.
LLM_FAULT_MIX: Mapping[LLMFaultKind, float] = MappingProxyType(
    {"rate_limit": 0.45, "server_error": 0.30, "exhausted": 0.15, "bad_request": 0.10}
)

_QUESTIONS = (
    ("How do I reset my password?", "account security"),
    ("Why was I charged twice this month?", "billing"),
    ("Can I export my data to CSV?", "data export"),
    ("How do I add a teammate to my workspace?", "workspaces"),
    ("The mobile app keeps logging me out.", "mobile sign-in"),
    ("How do I change my invoice address?", "billing"),
    ("Is there an API rate limit?", "api limits"),
    ("How do I enable two-factor authentication?", "account security"),
    ("Where can I see my usage this month?", "usage"),
    ("How do I cancel my subscription?", "subscriptions"),
)
_USERS = 12


def _check_share(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _check_window(name: str, value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not 0.0 <= value[0] < value[1] <= 1.0
    ):
        raise ValueError(f"{name} must be None or (start, end) with 0 <= start < end <= 1, got {value!r}")
    return (float(value[0]), float(value[1]))


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultModel:
    """What goes wrong in a demo run. ``rate=0`` is a clean run: no fault of any kind.

    Attributes:
        rate: the share of LLM turns that hit a fault, and the base rate of the tools' faults
            (``agentwatch demo --fault-rate``).
        tool_rates: per-tool overrides of ``rate`` (tool name -> share).
        critical_can_fail: whether the flaky critical tool may fail every attempt of a call (the
            session then ends with outcome ``error``); without it a flaky call fails once and
            its retry succeeds.
        llm_fault_mix: the shares of the LLM fault kinds among faulty turns: ``rate_limit``
            (one 429, retried after its retry-after), ``server_error`` (one or two 500s,
            retried), ``exhausted`` (three 503s: the fallback model answers), ``bad_request``
            (a context-length 400 that no model can serve: the session fails).
        outage: while this share of the sessions has started (``(start, end)``, fractions of the
            planned sessions), ``fetch_related_content``'s dependency is down, so its breaker
            opens, rejects, half-opens and closes again once the window has passed.
        llm_brownout: while this share of the sessions has started, the main model answers 503
            to every request: its breaker opens and the fallback model answers.
        loop_rate: the share of sessions in which the model keeps calling tools until the
            session hits the iteration cap (outcome ``max_iterations``).
    """

    rate: float = 0.1
    tool_rates: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    critical_can_fail: bool = True
    outage: tuple[float, float] | None = (0.3, 0.55)
    llm_brownout: tuple[float, float] | None = (0.65, 0.72)
    loop_rate: float = 0.05
    llm_fault_mix: Mapping[LLMFaultKind, float] = field(default_factory=lambda: LLM_FAULT_MIX)

    def __post_init__(self) -> None:
        _check_share("fault rate", self.rate)
        rates = dict(self.tool_rates)
        for tool, share in rates.items():
            if tool not in TOOL_NAMES:
                raise ValueError(
                    f"unknown demo tool {tool!r} in tool_rates; the tools are {', '.join(TOOL_NAMES)}"
                )
            _check_share(f"tool_rates[{tool!r}]", share)
        object.__setattr__(self, "tool_rates", MappingProxyType(rates))
        if not isinstance(self.critical_can_fail, bool):
            raise ValueError(f"critical_can_fail must be True or False, got {self.critical_can_fail!r}")
        object.__setattr__(self, "outage", _check_window("outage", self.outage))
        object.__setattr__(self, "llm_brownout", _check_window("llm_brownout", self.llm_brownout))
        _check_share("loop_rate", self.loop_rate)
        mix = dict(self.llm_fault_mix)
        if set(mix) - set(LLM_FAULT_MIX) or not mix:
            raise ValueError(
                f"llm_fault_mix keys must be some of {', '.join(LLM_FAULT_MIX)}, got {sorted(mix)}"
            )
        for kind, share in mix.items():
            _check_share(f"llm_fault_mix[{kind!r}]", share)
        if abs(sum(mix.values()) - 1.0) > 1e-9:
            raise ValueError(f"the llm_fault_mix shares must add up to 1, got {sum(mix.values()):g}")
        object.__setattr__(self, "llm_fault_mix", MappingProxyType(mix))

    @property
    def clean(self) -> bool:
        return self.rate == 0.0 and not any(self.tool_rates.values())

    def rate_for(self, tool: str) -> float:
        return self.tool_rates.get(tool, self.rate)

    def describe(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "tool_rates": dict(self.tool_rates),
            "critical_can_fail": self.critical_can_fail,
            "outage": self.outage,
            "llm_brownout": self.llm_brownout,
            "loop_rate": self.loop_rate,
            "llm_fault_mix": dict(self.llm_fault_mix),
        }


@dataclass(frozen=True, slots=True)
class LLMFault:
    """A fault of one LLM turn. ``failures``: requests to the main model that fail before one succeeds."""

    kind: LLMFaultKind
    failures: int


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A tool call the model will ask for, and how its dependency behaves for it.

    ``failing_attempts``: attempts that fail (the flaky tool); ``slow_attempts``: attempts that
    take longer than the tool's attempt timeout (the slow tool). ``latency`` is the normal
    duration of one attempt in seconds.
    """

    call_id: str
    tool: str
    arguments: dict[str, Any]
    latency: float
    failing_attempts: int = 0
    slow_attempts: int = 0


@dataclass(frozen=True, slots=True)
class Turn:
    """One LLM call of the agent loop: tool calls to ask for, or the final answer (``answer``)."""

    calls: tuple[PlannedCall, ...]
    answer: str | None
    latency: float
    output_tokens: int
    fault: LLMFault | None = None


@dataclass(frozen=True, slots=True)
class SessionPlan:
    index: int
    user_id: str
    question: str
    stream: bool
    loops: bool
    turns: tuple[Turn, ...]

    def call(self, call_id: str) -> PlannedCall | None:
        for turn in self.turns:
            for planned in turn.calls:
                if planned.call_id == call_id:
                    return planned
        return None


def _pick_fault(rng: random.Random, faults: FaultModel) -> LLMFault | None:
    if rng.random() >= faults.rate:
        return None
    roll = rng.random()
    mix = list(faults.llm_fault_mix.items())
    kind: LLMFaultKind = mix[-1][0]
    for candidate, share in mix:
        if roll < share:
            kind = candidate
            break
        roll -= share
    if kind == "rate_limit":
        return LLMFault(kind, 1)
    if kind == "server_error":
        return LLMFault(kind, 1 if rng.random() < 0.67 else 2)
    if kind == "exhausted":
        return LLMFault(kind, 3)
    return LLMFault(kind, 0)


def _tool_call(
    rng: random.Random,
    faults: FaultModel,
    index: int,
    turn: int,
    number: int,
    tool: str,
    user: str,
    topic: str,
) -> PlannedCall:
    call_id = f"call_{index:04d}_{turn}_{number}"
    rate = faults.rate_for(tool)
    if tool == SEARCH:
        failing = 0
        if rng.random() < rate:
            roll = rng.random()
            failing = 1 if roll < 0.6 or not faults.critical_can_fail else 2 if roll < 0.9 else 3
        return PlannedCall(
            call_id,
            tool,
            {
                "query": f"{topic} help article" if turn == 0 else f"{topic} troubleshooting step {turn}",
                "top_k": rng.choice((3, 4, 5)),
            },
            latency=round(rng.uniform(0.03, 0.15), 3),
            failing_attempts=failing,
        )
    if tool == PREFERENCES:
        # Slowness is the slow tool's failure mode, so it is seen a little more often than faults.
        slow = 0
        if rng.random() < min(1.0, rate * 1.5):
            slow = 1 if rng.random() < 0.6 else 2
        return PlannedCall(
            call_id, tool, {"user_id": user}, latency=round(rng.uniform(0.08, 0.3), 3), slow_attempts=slow
        )
    return PlannedCall(
        call_id, tool, {"topic": topic, "limit": rng.choice((3, 5))}, latency=round(rng.uniform(0.02, 0.1), 3)
    )


def _session_plan(seed: int, index: int, faults: FaultModel) -> SessionPlan:
    rng = random.Random(f"{seed}:{index}")
    question, topic = rng.choice(_QUESTIONS)
    user = f"user-{rng.randrange(_USERS) + 1}"
    stream = rng.random() < 0.35
    loops = rng.random() < faults.loop_rate
    turns: list[Turn] = []

    def latency() -> float:
        return round(rng.uniform(0.12, 0.45), 3)

    # First round: always the knowledge base, plus each optional tool half of the time.
    first = [SEARCH] + [t for t in (PREFERENCES, RELATED) if rng.random() < 0.5]
    rounds: list[list[str]] = [first]
    if loops:
        # The model keeps searching: each answer looks unhelpful to it, until the cap stops it.
        rounds.extend([SEARCH] if i % 2 else [SEARCH, RELATED] for i in range(1, MAX_ITERATIONS))
    elif rng.random() < 0.35:
        rounds.append([RELATED] if rng.random() < 0.5 else [SEARCH])
    for number, tools in enumerate(rounds):
        calls = tuple(
            _tool_call(rng, faults, index, number, i + 1, tool, user, topic) for i, tool in enumerate(tools)
        )
        turns.append(Turn(calls, None, latency(), rng.randint(18, 60) * len(calls), _pick_fault(rng, faults)))
    if not loops:
        words = rng.randint(40, 110)
        answer = f"Here is what I found about {topic}: " + " ".join(
            rng.choice(
                ("please", "open", "settings", "then", "select", "the", "option", "and", "confirm", "it")
            )
            for _ in range(words)
        )
        turns.append(Turn((), answer, latency(), math.ceil(words * 1.3), _pick_fault(rng, faults)))
    return SessionPlan(index, user, question, stream, loops, tuple(turns))


def build_plan(seed: int, sessions: int, faults: FaultModel) -> tuple[SessionPlan, ...]:
    """The plans of sessions ``0 .. sessions - 1``."""
    return tuple(_session_plan(seed, index, faults) for index in range(sessions))


def plan_digest(plans: Sequence[SessionPlan]) -> str:
    """A short fingerprint of the plans: equal digests mean the same scripted sessions."""
    text = json.dumps([asdict(p) for p in plans], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
