# The Airflow image for teams: the official image of the pinned version plus this project's pinned deps.
FROM apache/airflow:3.3.2-python3.11

ARG INSTALL_DEV=false
COPY --chown=airflow:root requirements.txt requirements-dev.txt constraints.txt /opt/airflow/deps/
RUN pip install --no-cache-dir -r /opt/airflow/deps/requirements.txt -c /opt/airflow/deps/constraints.txt \
 && if [ "$INSTALL_DEV" = "true" ]; then \
      pip install --no-cache-dir -r /opt/airflow/deps/requirements-dev.txt -c /opt/airflow/deps/constraints.txt; \
    fi
# dags/, include/, plugins/ and devstack/ are mounted by docker-compose.yaml; `include` imports from here.
ENV PYTHONPATH=/opt/airflow
