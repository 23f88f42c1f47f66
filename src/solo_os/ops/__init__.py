"""Operator use cases, written once: the CLI, the admin API and the testing kit call them.

One module per concept: ``replay`` and ``purge`` (dead letters), ``cancel`` (pending
executions), ``rerun`` (a finished execution again, an accepted event's handlers again),
``revalidate`` (rejected events against the current schemas), ``schedules`` (trigger, pause,
resume, backfill, status); ``budgets`` (attempt budgets) and ``select`` (which executions a
bulk action takes) serve them. Each takes the store port it needs and returns plain records (frozen
dataclasses) that each surface renders in its own words; ``errors`` holds the two refusals
(``NotFound``, ``Conflict``) a surface maps to its own (404/409, an exit code).
"""
