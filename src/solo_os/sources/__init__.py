"""Provider sources: how a webhook is verified, typed, keyed and unwrapped (SPEC section 2)."""

from solo_os.sources._base import DictHeaders, Headers, Source
from solo_os.sources.github import github
from solo_os.sources.hmac import hmac
from solo_os.sources.shopify import shopify
from solo_os.sources.slack import slack
from solo_os.sources.standard_webhooks import standard_webhooks
from solo_os.sources.stripe import stripe

__all__ = [
    "DictHeaders",
    "Headers",
    "Source",
    "github",
    "hmac",
    "shopify",
    "slack",
    "standard_webhooks",
    "stripe",
]
