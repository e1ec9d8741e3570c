"""Typed storage keys where aiohttp has them (3.9+ AppKey, 3.13+ RequestKey), plain strings on
older releases such as Debian 12's aiohttp 3.8, which the Debian package runs on."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def app_key(name: str, kind: type) -> Any:
    factory = getattr(web, "AppKey", None)
    return factory(name, kind) if factory else name


def request_key(name: str, kind: type) -> Any:
    factory = getattr(web, "RequestKey", None)
    return factory(name, kind) if factory else name
