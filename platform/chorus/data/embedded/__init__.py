"""Generators of the embedded datasets (N-Digits events, Shapes3D point clouds): no download needed."""
