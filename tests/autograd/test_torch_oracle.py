"""A second, independent implementation: a GPT-style block through our engine and through PyTorch
(skipped when PyTorch is not installed) must give the same loss and gradients in float64."""

import numpy as np
import pytest
from gpt_block import Ours, block_loss, block_problem, ours_params, torch_ops

torch = pytest.importorskip("torch")


def test_gpt_block_gradients_match_pytorch_in_float64():
    arrays, idx, targets, dims = block_problem()

    ours = ours_params(arrays)
    loss = block_loss(Ours, ours, idx, targets, *dims)
    loss.backward()

    theirs = {k: torch.tensor(a, requires_grad=True) for k, a in arrays.items()}
    ref = block_loss(torch_ops(torch), theirs, idx, targets, *dims)
    ref.backward()

    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    for name in arrays:
        np.testing.assert_allclose(
            ours[name].grad, theirs[name].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name
        )
