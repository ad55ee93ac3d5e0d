"""FaceFoundry: synthetic face datasets in, verified face-recognition accuracy out."""

__version__ = "0.1.0"
