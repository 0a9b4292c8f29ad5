"""adamw_update, both implementations, against torch.optim.AdamW over several steps, with and
without a decay mask. Skipped when PyTorch is not installed."""

import numpy as np
import pytest
from hypothesis import given
from layer_inputs import IMPLEMENTATIONS
from test_kernels_adamw import draw_run, hyperparameters, run

from tinygradlm import backend

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(**hyperparameters)
def test_adamw_update_matches_torch_over_several_steps(
    implementation, params, seed, lr, betas, eps, weight_decay, mask_kind
):
    grads, mask = draw_run(params, seed, mask_kind)
    ours, _, _ = run(
        backend.layers(implementation), params, grads, lr, betas, eps, weight_decay, mask
    )

    # torch.optim.AdamW with the decayed and the undecayed entries as two parameter groups
    decayed = np.ones(params.shape, bool) if mask is None else mask.astype(bool)
    groups = [torch.tensor(params[decayed]), torch.tensor(params[~decayed])]
    for t in groups:
        t.requires_grad_()
    opt = torch.optim.AdamW(
        [
            {"params": [groups[0]], "weight_decay": weight_decay},
            {"params": [groups[1]], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=betas,
        eps=eps,
    )
    for g in grads:
        groups[0].grad, groups[1].grad = torch.tensor(g[decayed]), torch.tensor(g[~decayed])
        opt.step()
    expected = np.empty_like(params)
    expected[decayed] = groups[0].detach().numpy()
    expected[~decayed] = groups[1].detach().numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
