"""Celery on Redis with one no-op task. ``acks_late``: a message is acknowledged after its
task ran, as solo-os records an outcome after its handler ran (and so that an empty queue
with nothing unacknowledged means every task has run)."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("bench", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/11"))
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ.get("CELERY_QUEUE", "bench"),
)


@app.task(name="noop")
def noop() -> None:
    """Nothing."""
