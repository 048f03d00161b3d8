"""Sizes: positive integers, or strings with a decimal (10K, 1M, 2G, 1T) or binary (4Ki, 1Mi)
suffix, or scientific notation (1e6)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE][+]?\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?\s*$")


def parse_size(value: object) -> int:
    """A positive integer from an int or a suffixed string; ValueError says what is accepted."""
    if isinstance(value, bool):
        raise ValueError("must be a positive integer, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a positive integer")
        number = int(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise ValueError("must be a positive integer or a size like 10K, 1M, 4Ki, 1e6")
        mantissa, suffix = match.group(1), (match.group(2) or "").replace("k", "K")
        if len(mantissa) > 40:
            raise ValueError("is larger than 10^15")
        try:  # exact decimal arithmetic: 1.1K is 1100, where float(1.1) * 1000 is 1100.0000000000002
            exact = Decimal(mantissa) * _SUFFIX[suffix]
        except InvalidOperation:
            raise ValueError("must be a positive integer or a size like 10K, 1M, 4Ki, 1e6") from None
        if exact > 10**15:
            raise ValueError("is larger than 10^15")
        if exact != exact.to_integral_value():
            raise ValueError("must come to a whole number")
        number = int(exact)
    else:
        raise ValueError(f"must be a positive integer (got a {type(value).__name__})")
    if number <= 0:
        raise ValueError("must be a positive integer")
    if number > 10**15:
        raise ValueError("is larger than 10^15")
    return number
