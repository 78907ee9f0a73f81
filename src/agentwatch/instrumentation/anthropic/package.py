_instruments = ("anthropic >= 0.27.0, < 3",)
