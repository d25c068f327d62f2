"""``train.precision``: autocast of the forward (bf16, fp16) and, for fp16, the gradient scaler.

Kept here rather than in Accelerate's ``mixed_precision``: Accelerate holds the precision in a
process-wide singleton that only its private ``_reset_state`` can change, and ``chorus.train.run`` is
called again in one process with other settings (tests, Ray Tune trials). So every run's
``Accelerator`` is made with ``mixed_precision="no"`` and this object does what Accelerate's native AMP
does: ``torch.autocast`` around the forward, and ``torch.amp.GradScaler`` around backward and step for
fp16 (CUDA only). Under DeepSpeed the engine casts the model itself (``bf16``/``fp16`` of its JSON)
and this object does nothing. The neuron's membrane arithmetic stays fp32 inside ``LIF`` either way.
"""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, name: str, device_type: str, deepspeed: bool = False):
        self.device_type = device_type
        self.dtype = None if deepspeed else DTYPES.get(name)
        self.scaler = torch.amp.GradScaler(device_type) if self.dtype is torch.float16 else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale(self, optimizer) -> None:
        """Before clipping: gradients in their true scale."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        """The optimizer step (skipped by the scaler when fp16 gradients overflowed)."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
