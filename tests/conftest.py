import os

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The Triton kernels run on CPU tensors in interpreter mode, which Triton reads once, at its first
# import: set it before any test module imports chorus (or triton). On a CUDA machine leave it off so
# the same tests launch the real kernels.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
# LIF(backend="auto") would measure the CPU backends once per setting on a fresh machine (compiling
# Inductor blocks): pin it to the C kernel for the suite; tests of "auto" itself unset this.
os.environ.setdefault("CHORUS_LIF_BACKEND", "c")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
