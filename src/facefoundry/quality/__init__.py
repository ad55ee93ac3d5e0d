"""Data quality of a face dataset: metrics (``metrics``), Great Expectations gates (``gates``), leakage.

Data flows one way: generator → dataset → quality → fusion → training. The ``validate`` stage computes
the metrics once per dataset version, runs the gates, and logs both to MLflow.
"""
