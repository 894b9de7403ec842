"""The `brawl` scene (placeholder until helper SIM writes it; registers nothing yet)."""
