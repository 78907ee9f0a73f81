"""Cost of an inference call in USD, from genai-prices plus the user's own prices.

genai-prices' ``calc_price`` costs ~90 µs a call (model lookup and a generic unit registry), more
than the rest of the instrumentation together. So the price of each (provider, model) is
resolved through genai-prices once and cached for an hour (prices can change on a date); the
per-call arithmetic is five multiplications. Models whose prices are tiered (a different rate
above an input-size threshold) go through genai-prices' own calculation every time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._config import PRICE_KEYS, ModelPrices
from agentwatch._internal import logger, report_internal_error, reset_in_forked_child
from agentwatch._telemetry._usage import Usage

__all__ = ["Pricer", "preload", "put_cost", "usd"]

# gen_ai.provider.name -> genai-prices provider id. Unknown providers let genai-prices guess
# from the model name.
_PROVIDER_IDS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    "moonshot_ai": "moonshotai",
    "deepseek": "deepseek",
    "groq": "groq",
    "cohere": "cohere",
    "perplexity": "perplexity",
}
_TTL_S = 3600.0
# Providers whose request model names what is billed more precisely than the response's: a
# Bedrock model id names the inference profile (``global.``, ``us.``...), which sets the price,
# while an InvokeModel body answers with the bare model name (``claude-sonnet-4-5-20250929``).
_PRICED_BY_REQUEST_MODEL = frozenset({"aws.bedrock"})


class _Rates:
    """Flat USD-per-token rates for one model, and a price per request where the provider charges
    one (Perplexity's)."""

    __slots__ = ("cache_read", "cache_write", "input", "output", "per_request", "reasoning")

    def __init__(
        self,
        input_mtok: float,
        output_mtok: float,
        cache_read_mtok: float | None,
        cache_write_mtok: float | None,
        output_reasoning_mtok: float | None,
        per_request: float = 0.0,
    ) -> None:
        self.per_request = per_request
        self.input = input_mtok / 1e6
        self.output = output_mtok / 1e6
        self.cache_read = self.input if cache_read_mtok is None else cache_read_mtok / 1e6
        self.cache_write = self.input if cache_write_mtok is None else cache_write_mtok / 1e6
        self.reasoning = self.output if output_reasoning_mtok is None else output_reasoning_mtok / 1e6

    def cost(self, usage: Usage) -> float:
        cache_read = usage.cache_read_tokens or 0
        cache_write = usage.cache_creation_tokens or 0
        reasoning = usage.reasoning_tokens or 0
        uncached = max((usage.input_tokens or 0) - cache_read - cache_write, 0)
        visible_output = max((usage.output_tokens or 0) - reasoning, 0)
        return (
            uncached * self.input
            + cache_read * self.cache_read
            + cache_write * self.cache_write
            + visible_output * self.output
            + reasoning * self.reasoning
            + self.per_request
        )


def preload() -> None:
    """Import genai-prices now, in the thread that is importing an instrumented library.

    genai-prices imports ``httpx2``. Imported lazily at the first priced call, that import ran in
    whichever application thread finished a call first, while other threads' openai clients read
    ``sys.modules["httpx2"]`` (openai 2.x does, to tell httpx2 clients apart): they could see the
    module half-initialized and fail with an AttributeError. Imported here, inside the import of
    the library (whose module lock makes the other threads wait), no call can race it.
    """
    try:
        import genai_prices  # noqa: F401
    except Exception:  # noqa: BLE001 - pricing then fails where it is used, and is reported there
        pass


class _Tiered:
    """A genai-prices ``ModelPrice`` with tiered rates: delegated to genai-prices per call."""

    __slots__ = ("model_price",)

    def __init__(self, model_price: Any) -> None:
        self.model_price = model_price

    def cost(self, usage: Usage) -> float:
        from genai_prices import Usage as GPUsage

        counts = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_creation_tokens,
            "output_reasoning_tokens": usage.reasoning_tokens,
        }
        result = self.model_price.calc_price(GPUsage(**{k: v for k, v in counts.items() if v}))
        return float(result["total_price"])


_Price = _Rates | _Tiered


def _rates_from_genai_prices(model_price: Any) -> _Price:
    values: dict[str, float | None] = {}
    for name in PRICE_KEYS:
        value = getattr(model_price, name, None)
        if value is None:
            values[name] = None
        elif isinstance(value, Decimal):
            values[name] = float(value)
        else:
            return _Tiered(model_price)
    if values["input_mtok"] is None and values["output_mtok"] is None:
        raise LookupError("genai-prices has no token prices for this model")
    requests = getattr(model_price, "requests_kcount", None)
    if requests is not None and not isinstance(requests, Decimal):
        return _Tiered(model_price)
    return _Rates(
        values["input_mtok"] or 0.0,
        values["output_mtok"] or 0.0,
        values["cache_read_mtok"],
        values["cache_write_mtok"],
        values["output_reasoning_mtok"],
        per_request=0.0 if requests is None else float(requests) / 1000,
    )


class Pricer:
    """Prices inference calls; ``cost()`` never raises and returns ``None`` for unknown models."""

    def __init__(self, overrides: Mapping[str, ModelPrices] | None = None) -> None:
        self._overrides = {
            model: _Rates(
                p.input_mtok, p.output_mtok, p.cache_read_mtok, p.cache_write_mtok, p.output_reasoning_mtok
            )
            for model, p in (overrides or {}).items()
        }
        # (provider, model) -> (price or None for "no known price", expiry on the monotonic clock)
        self._cache: dict[tuple[str, str], tuple[_Price | None, float]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        reset_in_forked_child(self, "_lock")

    def price_of(self, provider: str, model: str) -> _Price | None:
        if (override := self._overrides.get(model)) is not None:
            return override
        key = (provider, model)
        entry = self._cache.get(key)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            return entry[0]
        price = self._resolve(provider, model)
        # A race only resolves the same model twice; the dict assignment itself is atomic.
        self._cache[key] = (price, now + _TTL_S)
        return price

    def _resolve(self, provider: str, model: str) -> _Price | None:
        try:
            from genai_prices import data_snapshot

            snapshot = data_snapshot.get_snapshot()
            _provider, model_info = snapshot.find_provider_model(
                model, None, _PROVIDER_IDS.get(provider), None
            )
            return _rates_from_genai_prices(model_info.get_prices(datetime.now(tz=timezone.utc)))
        except LookupError:
            return None
        except Exception:  # noqa: BLE001 - price data must never break a call
            report_internal_error("pricing lookup")
            return None

    def cost(self, provider: str, models: tuple[str | None, ...], usage: Usage) -> float | None:
        """USD for ``usage``, priced by the first of ``models`` with a known price.

        ``models`` is (response model, request model): the response model names the exact
        snapshot that was billed; the request model is the fallback for servers that answer
        with a name no price list knows (deployments, proxies). Bedrock's are tried the other
        way round (see ``_PRICED_BY_REQUEST_MODEL``).
        """
        if provider in _PRICED_BY_REQUEST_MODEL:
            models = models[::-1]
        try:
            for model in models:
                if model:
                    price = self.price_of(provider, model)
                    if price is not None:
                        return usd(price.cost(usage))
            self._warn_unpriced(provider, models)
        except Exception:  # noqa: BLE001
            report_internal_error("cost calculation")
        return None

    def _warn_unpriced(self, provider: str, models: tuple[str | None, ...]) -> None:
        name = next((m for m in models if m), None)
        if name is None:
            return
        with self._lock:
            if name in self._warned:
                return
            self._warned.add(name)
        logger.warning(
            "agentwatch: no price known for model %r (provider %s); its calls carry "
            "agentwatch.usage.cost.unpriced=true and no cost. Add a price with "
            "instrument(prices=...) or AGENTWATCH_PRICES_FILE.",
            name,
            provider,
        )


def usd(amount: float) -> float:
    """``amount`` to 12 significant digits: rates per token times token counts leave binary noise
    (``5.999999999999999e-06``) that readers of a span should not have to see; a dollar amount
    has nothing to tell past its 12th digit."""
    return float(f"{amount:.12g}")


def put_cost(attributes: dict[str, AttributeValue], cost: float | None, unpriced: bool) -> None:
    """The cost attributes of a call or a session: an amount in USD, or the unpriced flag, never a 0."""
    if cost is not None:
        attributes[sc.USAGE_COST_AMOUNT] = usd(cost)
        attributes[sc.USAGE_COST_CURRENCY] = "USD"
    elif unpriced:
        attributes[sc.COST_UNPRICED] = True
