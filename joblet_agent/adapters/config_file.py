"""Reads /etc/joblet/joblet.yml; domain/config.py makes it an AgentConfig."""

from __future__ import annotations

from pathlib import Path

from joblet_agent.domain.bounded_yaml import BoundedYamlError, load_yaml
from joblet_agent.domain.config import DEFAULT_CONFIG_PATH, AgentConfig, parse_config
from joblet_agent.errors import ErrorCode, JobletError

# The shipped file, every key commented, is 3 KiB: a file this size is a mistake, not a config.
MAX_CONFIG_BYTES = 1 << 20


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> AgentConfig:
    """The agent's config; its defaults when the file does not exist."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return AgentConfig()
    except OSError as exc:
        raise JobletError(ErrorCode.CONFIG, f"{path}: cannot be read: {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise JobletError(
            ErrorCode.CONFIG, f"{path}: larger than {MAX_CONFIG_BYTES} bytes, the most allowed"
        )
    try:
        data = load_yaml(raw.decode())
    except UnicodeDecodeError:
        raise JobletError(ErrorCode.CONFIG, f"{path}: not UTF-8 text") from None
    except BoundedYamlError as exc:
        raise JobletError(ErrorCode.CONFIG, f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))
