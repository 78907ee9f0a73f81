_instruments = ("openai >= 1.26.0, < 4",)
