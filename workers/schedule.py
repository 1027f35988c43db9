"""The periodic schedule that ``spamsift beat`` runs."""

from __future__ import annotations

from workers.names import RECONCILE


def beat_schedule(reconcile_after_seconds: int) -> dict:
    return {
        "reconcile-stuck-emails": {
            "task": RECONCILE,
            # Look often enough that a lost message delays an email by about the grace period.
            "schedule": max(10.0, reconcile_after_seconds / 5),
        },
    }
