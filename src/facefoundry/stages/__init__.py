"""Pipeline stages (orchestrators): each reads the config, does its work, and is one MLflow run."""
