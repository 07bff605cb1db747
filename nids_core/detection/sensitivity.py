"""One sensitivity setting that moves every detector's threshold and the alert threshold
together: `low` asks for twice the evidence `medium` does, `high` for half."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Sensitivity = Literal["low", "medium", "high"]
SENSITIVITIES: tuple[str, ...] = ("low", "medium", "high")
_FACTOR = {"low": 2.0, "medium": 1.0, "high": 0.5}


@dataclass(frozen=True)
class Thresholds:
    """What each detector needs before it writes evidence, and what an alert needs.

    The medium values are the tools' own defaults: Zeek's scan.zeek (25 hosts on one port,
    15 ports on one host, in 5 minutes), RITA (beacons from 20 connections a day, a score
    of 0.8; long connections from an hour)."""

    scan_window_minutes: int = 5
    horizontal_scan_hosts: int = 25
    vertical_scan_ports: int = 15
    beacon_min_connections: int = 20
    beacon_min_score: float = 0.8
    long_connection_seconds: float = 3600.0
    model_min_flows: int = 1
    alert_min_score: float = 0.4  # noisy-or of threat x confidence, 0..1 (severity 40)

    @classmethod
    def for_sensitivity(cls, sensitivity: str) -> Thresholds:
        if sensitivity not in _FACTOR:
            raise ValueError(
                f"sensitivity {sensitivity!r} is not one of {', '.join(SENSITIVITIES)}"
            )
        f = _FACTOR[sensitivity]
        base = cls()
        return cls(
            scan_window_minutes=base.scan_window_minutes,
            horizontal_scan_hosts=max(2, round(base.horizontal_scan_hosts * f)),
            vertical_scan_ports=max(2, round(base.vertical_scan_ports * f)),
            beacon_min_connections=max(4, round(base.beacon_min_connections * f)),
            # 0.8 -> 0.9 (low) / 0.7 (high): the distance to a perfect score scales.
            beacon_min_score=1 - (1 - base.beacon_min_score) / f,
            long_connection_seconds=base.long_connection_seconds * f,
            model_min_flows=max(1, round(base.model_min_flows * f)),
            alert_min_score=min(0.95, base.alert_min_score * f),
        )
