"""One module per resource type; each exposes ROUTES."""
