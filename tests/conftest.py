"""Shared fixtures: tiny random-weight diffusers U-Nets with attention (fast on 2 CPU cores)."""

from __future__ import annotations

import os

import pytest
import torch
from unet_factories import make_tiny_unet2d, make_tiny_unet2d_condition

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_unet():
    return make_tiny_unet2d()


@pytest.fixture(scope="session")
def tiny_cond_unet():
    return make_tiny_unet2d_condition()
