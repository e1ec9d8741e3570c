"""The HTTP JSON API (aiohttp), versioned under /v1."""
