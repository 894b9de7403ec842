"""The `rooftop_chase` scene (placeholder until helper SIM writes it; registers nothing yet)."""
