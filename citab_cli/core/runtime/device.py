"""How tensors are laid out and computed on each device, the same in training and in every
later use of the model: bf16 autocast and channels-last 3D on CUDA, plain fp32 on the CPU."""

from __future__ import annotations

import contextlib

import torch

from citab_cli.core.errors import CitabError


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on other devices."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def model_layout(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device`, its 3D convolutions channels-last on CUDA."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def image_layout(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A (B, 1, D, H, W) batch on `device` as float32, channels-last on CUDA. Scans travel as
    the float16 they are stored in and are widened on the device: half the bytes copied, and
    no conversion on the host (float16 to float32 is exact, so the values are the same)."""
    images = images.to(device, non_blocking=True).float()
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last_3d)
    return images


def to_device(array, device: torch.device) -> torch.Tensor:
    """A host array (numpy) as a tensor on `device`; on CUDA copied from page-locked memory
    without waiting, so the GPU's queue is not drained for a few bytes."""
    tensor = torch.as_tensor(array)
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto`: this process's CUDA device when PyTorch sees one, else the CPU; `cpu`; `cuda`
    (refused when there is none)."""
    if choice not in ("auto", "cpu", "cuda"):
        raise CitabError(f"--device {choice} is not one of auto, cpu, cuda")
    available = torch.cuda.is_available()
    if choice == "cuda" and not available:
        raise CitabError("--device cuda, but PyTorch sees no CUDA device; use --device cpu")
    if choice == "cpu" or not available:
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def describe_device(device: torch.device) -> str:
    """ "CUDA device 0 (NVIDIA H200), bf16" or "the CPU, fp32": for telling the user."""
    if device.type != "cuda":
        return "the CPU, fp32"
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"CUDA device {index} ({torch.cuda.get_device_name(index)}), bf16 autocast"
