"""One module per resource type; each exposes a click group."""
