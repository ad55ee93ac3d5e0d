"""Weight-bearing modules: backbones and margin heads."""
