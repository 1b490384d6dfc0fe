"""Compliance dashboard inside the Airflow UI: a FastAPI app on the API server plus a nav entry.

Airflow does not authenticate plugin apps (a mounted app inherits none of the core API's dependencies), so
every route here requires what reading the `ec2_audit_compliance` DAG requires: an Airflow login (the UI's
JWT cookie or a bearer token; none → 401) and the auth manager's permission on that DAG (no → 403).
Data comes from the evidence table through the Amazon provider's hooks (`aws_default`).
"""
from __future__ import annotations

import asyncio
import os
from datetime import date
from typing import Annotated

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from include.settings.schema import INSTANCE_ID_PATTERN

DAG_ID = "ec2_audit_compliance"
PREFIX = "/ec2-audit"

# FastAPI's own /docs, /redoc and /openapi.json are Starlette routes outside the app's dependencies: they
# would be served to anyone, unauthenticated. The dashboard is HTML pages for people, not an API for
# clients (Airflow's REST API has its own documented schema), so they are switched off, not re-guarded.
app = FastAPI(title="EC2 audit compliance dashboard", docs_url=None, redoc_url=None, openapi_url=None,
              dependencies=[Depends(requires_access_dag("GET", param_dag_id=DAG_ID))])


def _remediations(store):
    from include.remediation.store import RemediationStore

    return RemediationStore(store)


def _store():
    from include.evidence.store import EvidenceStore
    from include.settings.params import DEFAULT_TABLE

    # The DAG's default table (its `evidence_table` param default); a deployment that sets another one sets it here.
    return EvidenceStore.open(os.environ.get("EC2_AUDIT_EVIDENCE_TABLE", DEFAULT_TABLE))


def _fleet(day: str | None) -> str:
    from include.checks.catalogue import check_meta
    from include.report import dashboard, trend

    store = _store()
    day = day or store.latest_audit_day()
    if day is None:
        return dashboard.fleet_page(None, None, [], None, {})
    return dashboard.fleet_page(day, store.run_summary(day), store.day_items(day), trend.chart_for_day(store, day),
                                check_meta(), _remediations(store).day_remediations(day))


def _host(instance_id: str, day: str | None = None) -> str:
    from include.report import dashboard

    store = _store()
    history = store.host_history(instance_id)
    day = day or (history[0].audit_date if history else None)  # default: the host's latest day
    return dashboard.host_page(instance_id, history, _remediations(store).host_remediations(instance_id),
                               day=day, observations=store.observations(instance_id, day) if day else [])


# Typed: FastAPI refuses (422) anything else, so only a date and an instance id ever reach DynamoDB.
InstanceId = Annotated[str, PathParam(pattern=INSTANCE_ID_PATTERN, description="an EC2 instance id")]


@app.get("/", response_class=HTMLResponse)
async def fleet(day: Annotated[date | None, Query(description="audit day, YYYY-MM-DD")] = None) -> str:
    # boto3 is blocking: keep the API server's loop free
    return await asyncio.to_thread(_fleet, day.isoformat() if day else None)


@app.get("/host/{instance_id}", response_class=HTMLResponse)
async def host(instance_id: InstanceId,
               day: Annotated[date | None, Query(description="audit day, YYYY-MM-DD")] = None) -> str:
    return await asyncio.to_thread(_host, instance_id, day.isoformat() if day else None)


class Ec2AuditDashboard(AirflowPlugin):
    name = "ec2_audit_dashboard"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "EC2 audit compliance"}]
    external_views = [{"name": "EC2 audit compliance", "href": f"{PREFIX}/", "destination": "nav",
                       "category": "browse", "url_route": "ec2-audit"}]
