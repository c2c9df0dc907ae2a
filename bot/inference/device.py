"""Where models run and in which precision."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """The device models go to, their weight dtype and extra ``from_pretrained`` arguments."""

    device: torch.device
    dtype: torch.dtype
    quantization: str = "none"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def load_kwargs(self) -> dict[str, Any]:
        """Arguments for ``from_pretrained`` that place and size the weights."""
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.is_cuda:
            # accelerate spreads a model that does not fit one GPU over the others
            # (and the CPU); one that fits lands whole on the chosen GPU.
            index = self.device.index
            kwargs["device_map"] = "auto" if index is None else {"": index}
            if self.quantization != "none":
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
                    load_in_8bit=self.quantization == "8bit",
                    load_in_4bit=self.quantization == "4bit",
                    bnb_4bit_compute_dtype=self.dtype,
                )
        return kwargs


def resolve_device(setting: str, quantization: str = "none") -> DevicePlan:
    """Turn the DEVICE setting into a plan: CUDA in half precision when present, else CPU."""
    wants_cuda = setting.startswith("cuda") or (setting == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"DEVICE={setting} but torch sees no CUDA device")
    if not wants_cuda:
        if quantization != "none":
            log.warning("QUANTIZATION=%s needs CUDA; loading full-precision weights", quantization)
        plan = DevicePlan(torch.device("cpu"), torch.float32)
    else:
        device = torch.device(setting if setting != "auto" else "cuda")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        plan = DevicePlan(device, dtype, quantization)
    name = torch.cuda.get_device_name(plan.device) if plan.is_cuda else "CPU"
    log.info("models run on %s (%s, %s)", plan.device, name, str(plan.dtype).removeprefix("torch."))
    return plan
