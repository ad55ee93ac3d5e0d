"""Unpaired realism transfer: rendered faces → the look of an unlabelled photo folder."""
