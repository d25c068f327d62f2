"""The settings grid every fused-vs-reference neuron test walks (shared by the test modules)."""
import itertools

GRID = list(itertools.product(
    [0.0, None],                 # hard reset (V_r = 0) / soft reset
    [True, False],               # decay_input
    [False, True],               # detach_reset
    ["sigmoid", "atan", "rect"], # surrogate
    [False, True],               # MPS
))
