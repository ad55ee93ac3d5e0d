"""DigiFace-style 3D-rendered faces: parametric head, software rasteriser, aligned output."""
