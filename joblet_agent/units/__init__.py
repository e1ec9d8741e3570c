"""Pure translation of job specs into systemd unit properties. Imports nothing from D-Bus."""
