"""The same weights in a straightforward PyTorch GPT-2 give the same loss and every gradient
(skipped when PyTorch is not installed)."""

import numpy as np
import pytest

from tinygradlm import backend
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.testing.torch_gpt2 import gpt2_loss

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "dtype, kernels, rtol, atol",
    [
        (np.float64, "numpy", 1e-9, 1e-12),
        (np.float64, "numba", 1e-9, 1e-12),
        (np.float32, "numpy", 2e-3, 3e-5),
        (np.float32, "numba", 2e-3, 3e-5),
    ],
)
def test_loss_and_every_gradient_match_pytorch(dtype, kernels, rtol, atol):
    config = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)
    model = GPT(config, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    model.flat_params += rng.normal(0, 0.1, size=model.flat_params.shape).astype(dtype)
    idx = rng.integers(0, config.vocab_size, size=(3, 12))
    targets = rng.integers(0, config.vocab_size, size=(3, 12))
    targets[2, :4] = -100

    with backend.use_kernels(kernels):
        loss, grads = model.forward_backward(idx, targets)

    sd = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
    ref = gpt2_loss(torch, sd, torch.tensor(idx), torch.tensor(targets), config)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=rtol)
    for name, tensor in sd.items():
        np.testing.assert_allclose(
            grads[name], tensor.grad.numpy(), rtol=rtol, atol=atol, err_msg=name
        )
