"""Which addresses are inside the monitored network: private, loopback and link-local
ranges (RFC 1918, RFC 4193, ...), as Zeek's `Site::local_nets` is usually set."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import polars as pl


@lru_cache(maxsize=65536)
def is_internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local


def internal_mask(addresses: pl.Series) -> pl.Series:
    """True where the address is internal, computed once per distinct address."""
    return _mask(addresses, is_internal)


@lru_cache(maxsize=65536)
def is_group(address: str) -> bool:
    """Multicast or broadcast: a destination no implant calls back to."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_multicast or (ip.version == 4 and str(ip).endswith(".255"))


def _mask(addresses: pl.Series, test) -> pl.Series:
    distinct = addresses.unique().to_list()
    lookup = dict(zip(distinct, [test(a) for a in distinct], strict=True))
    return addresses.replace_strict(lookup, return_dtype=pl.Boolean, default=False)


def outward_mask(flows: pl.DataFrame) -> pl.Series:
    """True for flows from an internal host to an external, unicast one."""
    return (
        _mask(flows["orig_h"], is_internal)
        & ~_mask(flows["resp_h"], is_internal)
        & ~_mask(flows["resp_h"], is_group)
    )


def group_mask(addresses: pl.Series) -> pl.Series:
    return _mask(addresses, is_group)
