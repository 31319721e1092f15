"""Security filters: ban list, flood and authentication-failure counting, scanner
fingerprints. Pure: time comes in as ``now``; the engine asks before and after parsing."""

from .bans import Ban, BanList
from .pipeline import Security
from .rate import WindowCounter
from .scanners import ScannerSignatures

__all__ = ["Ban", "BanList", "ScannerSignatures", "Security", "WindowCounter"]
