"""One start-up measurement in a fresh interpreter: run by ``startup.py``, prints one JSON line.

    python startup_driver.py openai        # import openai
    python startup_driver.py app-sdk       # import openai; the app sets up its SDK; import agentwatch; instrument()
    python startup_driver.py configure     # import openai; import agentwatch; instrument() configuring the SDK
    python startup_driver.py no-client     # the app sets up its SDK; import agentwatch; instrument()

Times are this process's CPU time (``time.process_time``) and wall time around each step. The
process ends with ``os._exit``: what is measured is start-up, not the SDK's shutdown at exit.
Nothing is imported before the steps but the standard library modules this file needs.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _clients() -> set[str]:
    """Imported modules of the client libraries agentwatch instruments (their top-level names)."""
    names = set(os.environ.get("STARTUP_CLIENT_MODULES", "").split(","))
    names.discard("")
    return {m for m in sys.modules if m in names or any(m.startswith(n + ".") for n in names)}


def _app_sdk() -> None:
    """What an application that uses OpenTelemetry has done before instrumenting: its providers."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    metrics.set_meter_provider(MeterProvider())


def main(mode: str) -> None:
    steps: dict[str, tuple[float, float]] = {}

    def step(name: str, action: object) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        action()  # type: ignore[operator]
        steps[name] = (time.process_time() - cpu, time.perf_counter() - wall)

    def import_openai() -> None:
        import openai  # noqa: F401

    def import_agentwatch() -> None:
        import agentwatch  # noqa: F401

    def instrument() -> None:
        import agentwatch

        agentwatch.instrument()

    if mode in ("openai", "app-sdk", "configure"):
        step("import openai", import_openai)
    if mode in ("app-sdk", "no-client"):
        _app_sdk()
    clients_before = _clients()
    if mode != "openai":
        step("import agentwatch", import_agentwatch)
        step("instrument()", instrument)
    print(
        json.dumps(
            {
                "mode": mode,
                "cpu": {name: cpu for name, (cpu, _) in steps.items()},
                "wall": {name: wall for name, (_, wall) in steps.items()},
                "clients_imported_by_agentwatch": sorted(_clients() - clients_before),
            }
        ),
        flush=True,
    )
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
