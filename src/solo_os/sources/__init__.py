"""Provider sources: how a webhook is verified, typed, keyed and unwrapped (SPEC section 2)."""

from solo_os.sources._base import DictHeaders, Headers, Source
from solo_os.sources.calendly import calendly
from solo_os.sources.clerk import clerk
from solo_os.sources.discord import discord
from solo_os.sources.github import github
from solo_os.sources.gitlab import gitlab
from solo_os.sources.hmac import hmac
from solo_os.sources.hubspot import hubspot
from solo_os.sources.intercom import intercom
from solo_os.sources.internal import internal
from solo_os.sources.lemonsqueezy import lemonsqueezy
from solo_os.sources.linear import linear
from solo_os.sources.mailgun import mailgun
from solo_os.sources.paddle import paddle
from solo_os.sources.postmark import postmark
from solo_os.sources.queue import nats, rabbitmq, redis_stream, sqs
from solo_os.sources.resend import resend
from solo_os.sources.sendgrid import sendgrid
from solo_os.sources.shopify import shopify
from solo_os.sources.slack import slack
from solo_os.sources.square import square
from solo_os.sources.standard_webhooks import standard_webhooks
from solo_os.sources.stripe import stripe
from solo_os.sources.twilio import twilio
from solo_os.sources.typeform import typeform

__all__ = [
    "DictHeaders",
    "Headers",
    "Source",
    "calendly",
    "clerk",
    "discord",
    "github",
    "gitlab",
    "hmac",
    "hubspot",
    "intercom",
    "internal",
    "lemonsqueezy",
    "linear",
    "mailgun",
    "nats",
    "paddle",
    "postmark",
    "rabbitmq",
    "redis_stream",
    "resend",
    "sendgrid",
    "shopify",
    "slack",
    "sqs",
    "square",
    "standard_webhooks",
    "stripe",
    "twilio",
    "typeform",
]
