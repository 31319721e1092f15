"""Health of peer hosts: OPTIONS probes decide which hosts are up (sans-I/O state only)."""

from .monitor import HealthMonitor, HostHealth

__all__ = ["HealthMonitor", "HostHealth"]
