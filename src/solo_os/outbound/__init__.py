"""Calls a handler makes to the outside world: ``ctx.http``, its options and its rate limits."""
