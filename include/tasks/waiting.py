"""A wait that holds no worker: the watch's launch boot and clean-stop grace (dags/ec2_audit_watch.py)."""
from __future__ import annotations

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync


class WaitUntil(DateTimeSensorAsync):
    """DateTimeSensorAsync that does not defer when the moment has passed: most watch runs wait for nothing,
    and a round trip through the triggerer would add seconds to every re-check's latency."""

    def execute(self, context):
        from airflow.sdk import timezone

        if timezone.utcnow() >= self._moment:
            return None
        return super().execute(context)
