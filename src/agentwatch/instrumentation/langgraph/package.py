_instruments = ("langgraph >= 0.2.17",)
