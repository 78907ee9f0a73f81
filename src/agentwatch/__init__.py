"""agentwatch: OpenTelemetry instrumentation and resilience for tool-using LLM agents."""
