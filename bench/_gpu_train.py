"""Part (c) of bench/gpu_check.py: training steps of spiking VGG-9, chorus vs the SpikingJelly build.

The model is ``chorus.models.create("vgg9", ...)`` (MPS on and off) and its ReLU twin, beside the same
network from SpikingJelly layers (``bench/models.py``, ``sj_vgg9``). Every candidate trains with the
project's loss, ``chorus.losses.ensemble_loss`` (CE of the mean logits + γ·TASG, γ = 1; docs/method.md,
"The spiking core"), SGD with momentum, under bf16 autocast on CUDA (fp32 on the CPU). Input
``[T, B, 2, S, S]`` with T = 5, B = 64, S = 48 (CIFAR10-DVS shape); a dry run takes T = 2, B = 2, S = 16.
After warm-up steps, samples/s = B · steps / wall time of the timed steps (synchronised).
"""
from __future__ import annotations

import contextlib
import time

import torch
from torch import nn

SJ = "SpikingJelly LIF"


def _nets(shape, size: int, device: str) -> dict:
    import chorus.models as M
    from models import relu_twin, sj_vgg9

    nets = {"chorus MPS on": (M.create("vgg9", 10, shape, neuron={"mps": True}), None),
            "chorus MPS off": (M.create("vgg9", 10, shape), None),
            "chorus ReLU twin": (relu_twin(M.create("vgg9", 10, shape)), None)}
    try:
        from spikingjelly.activation_based import functional

        nets[SJ] = (sj_vgg9(10, size, "lif"), functional.reset_net)
    except ImportError:
        pass
    return {k: (m.to(device), r) for k, (m, r) in nets.items()}


def _stepper(model: nn.Module, reset, x, y, device: str):
    from chorus.losses.ensemble import ensemble_loss

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with amp:
            logits = model(x)
        loss = ensemble_loss(logits.float(), y, gamma=1.0)["loss"]
        loss.backward()
        opt.step()
        if reset is not None:
            reset(model)
        return loss.detach()

    return step


def run(device: str, dry_run: bool, deadline: float) -> dict:
    T, B, S = (2, 2, 16) if dry_run else (5, 64, 48)
    warmup, steps = (1, 2) if dry_run else (3, 15)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(T, B, 2, S, S, generator=gen) < 0.2).float().to(device)
    y = torch.randint(0, 10, (B,), generator=gen).to(device)
    out = {"ran": True, "T": T, "batch": B, "size": S, "precision": "bf16" if device == "cuda" else "fp32",
           "steps": steps, "rows": [], "skipped": {}}
    nets = _nets((2, S, S), S, device)
    if SJ not in nets:
        out["skipped"][SJ] = "spikingjelly is not installed"
    for name, (model, reset) in nets.items():
        if time.time() > deadline:
            out["skipped"][name] = "time budget spent"
            continue
        step = _stepper(model, reset, x, y, device)
        try:
            t0 = time.perf_counter()
            for _ in range(warmup):
                loss = step()
            sync()
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = step()
            sync()
            wall = time.perf_counter() - t0
        except Exception as exc:  # one candidate that cannot train here (e.g. a peer kernel without bf16)
            out["skipped"][name] = f"raised {type(exc).__name__}: {str(exc)[:300]}"
            continue
        out["rows"].append({"candidate": name, "samples_per_s": round(B * steps / wall, 2),
                            "step_ms": round(wall / steps * 1e3, 3), "warmup_s": round(first, 3),
                            "loss": float(loss), "finite": bool(torch.isfinite(loss))})
    rate = {r["candidate"]: r["samples_per_s"] for r in out["rows"]}
    if SJ in rate and "chorus MPS on" in rate:
        out["mps_on_vs_sj"] = round(rate["chorus MPS on"] / rate[SJ], 3)
    if "chorus ReLU twin" in rate and "chorus MPS on" in rate:
        out["mps_on_vs_relu_twin"] = round(rate["chorus MPS on"] / rate["chorus ReLU twin"], 3)
    return out
