"""The running service: ingress, worker, scheduler, alerter, pruner, and the ``Runtime`` that runs them."""
