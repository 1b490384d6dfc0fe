"""The day's report: numbers, trend and analysis, HTML and JSON through the Jinja2 templates, the dashboard's data, where reports are stored."""
