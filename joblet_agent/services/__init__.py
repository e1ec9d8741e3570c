"""Use cases: what the API asks of the agent."""
