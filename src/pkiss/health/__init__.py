"""Health of peer hosts: OPTIONS probes decide which hosts are up."""

from .monitor import HealthMonitor, HostHealth
from .prober import Prober

__all__ = ["HealthMonitor", "HostHealth", "Prober"]
