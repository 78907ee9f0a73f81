_instruments = ("anthropic >= 0.16.0, < 3",)
