"""FaceFoundry: synthetic face datasets in, verified face-recognition accuracy out."""

import os as _os

# No network at run time: MLflow 3's usage telemetry (a background thread posting to the internet) stays off,
# here and in every MLflow server or Ray worker the platform starts (they inherit the environment).
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
