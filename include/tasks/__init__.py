"""The Airflow-facing steps: the only place that reads the Airflow context and XCom (audit, remediate, assets, param validation)."""
