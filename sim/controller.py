"""Character choreography controller (filled in below)."""
