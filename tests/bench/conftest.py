"""Fixtures for tests/bench."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import GreedyTokenizer, tiny_llama


@pytest.fixture
def tok() -> GreedyTokenizer:
    return GreedyTokenizer()


@pytest.fixture
def model() -> torch.nn.Module:
    return tiny_llama(np.random.default_rng(7))
