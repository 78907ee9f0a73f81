"""Token counts of one inference call, normalised to the semantic conventions."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Billed token counts; ``None`` where the provider did not report a number.

    ``input_tokens`` includes cached input (read and creation) and ``output_tokens`` includes
    reasoning, as ``gen_ai.usage.input_tokens``/``output_tokens`` do in semconv v1.41; the
    extractors convert provider-specific shapes (Anthropic reports them separately) into this.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def reported(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None
