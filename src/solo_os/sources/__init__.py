"""Provider sources: how a webhook is verified, typed, keyed and unwrapped (SPEC section 2)."""

from solo_os.sources._base import DictHeaders, Headers, Source
from solo_os.sources.hmac import hmac

__all__ = ["DictHeaders", "Headers", "Source", "hmac"]
