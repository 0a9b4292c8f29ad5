"""tinygradlm.params: the flat-buffer container that GPT and the LoRA adapters share: views tile
the buffers in order, masks, state-dict round trips, and a load that reports every problem at
once and copies nothing unless all match."""

import numpy as np
import pytest

from tinygradlm.lora import TARGETS, LoRAAdapters, LoRAConfig, adapter_shapes
from tinygradlm.model import GPT, GPTConfig, parameter_shapes
from tinygradlm.params import ParameterBuffer, load_views, named_views

SHAPES = {"w": (2, 3), "b": (3,), "e": (4, 2)}


def test_views_tile_both_flat_buffers_in_order():
    buffer = ParameterBuffer(SHAPES, np.float64)
    assert buffer.size == 6 + 3 + 8 and buffer.flat_params.dtype == np.float64
    buffer.flat_params[...] = np.arange(buffer.size)
    assert buffer.params["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert buffer.params["b"].tolist() == [6, 7, 8]
    for views, flat in ((buffer.params, buffer.flat_params), (buffer.grads, buffer.flat_grads)):
        for view in views.values():
            assert np.shares_memory(view, flat)
    buffer.grads["e"][...] = 1
    assert buffer.flat_grads[9:].tolist() == [1] * 8 and not buffer.flat_grads[:9].any()


def test_named_views_refuse_shapes_that_do_not_tile_the_buffer():
    with pytest.raises(ValueError, match="tile 9 numbers but the buffer has 10"):
        named_views(np.zeros(10), {"w": (3, 3)})


def test_masks_select_tensors_by_name_and_shape():
    buffer = ParameterBuffer(SHAPES)
    assert buffer.decay_ranges().tolist() == [[0, 6], [9, 17]]  # w, then the next 2-D ones
    assert buffer.decay_ranges().dtype == np.int64
    mask = buffer.mask(lambda name, shape: name == "b")
    assert mask.dtype == np.float32 and mask.tolist() == [0] * 6 + [1] * 3 + [0] * 8


def test_state_dict_round_trips_through_copies():
    a, b = ParameterBuffer(SHAPES), ParameterBuffer(SHAPES)
    a.flat_params[...] = np.random.default_rng(0).normal(size=a.size)
    b.load_state_dict({name: view.copy() for name, view in a.state_dict().items()})
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_load_reports_every_problem_at_once_and_copies_nothing():
    buffer = ParameterBuffer(SHAPES)
    state = {
        "w": np.ones((3, 2), np.float32),  # shape
        "b": np.ones(3, np.float64),  # dtype
        "x": np.ones(1, np.float32),  # unexpected
    }  # "e" missing
    with pytest.raises(ValueError) as err:
        buffer.load_state_dict(state, "loading the test buffer")
    assert str(err.value).splitlines() == [
        "loading the test buffer:",
        "  missing: e",
        "  unexpected: x",
        "  w: shape (3, 2), expected (2, 3)",
        "  b: dtype float64, expected float32",
    ]
    assert not buffer.flat_params.any()


def test_load_views_writes_through_views_with_a_different_shape_than_the_tensor():
    # GPT's state dict shows the first V rows of the padded embedding: a view, not a tensor
    buffer = ParameterBuffer({"wte": (4, 2)})
    targets = {"wte": buffer.params["wte"][:3]}
    load_views(targets, {"wte": np.ones((3, 2), np.float32)}, "load")
    assert buffer.params["wte"].sum(axis=1).tolist() == [2, 2, 2, 0]


def test_gpt_and_lora_adapters_keep_their_tensors_in_a_parameter_buffer():
    config = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=8)
    model = GPT(config)
    adapters = model.add_lora(LoRAConfig(rank=2))
    for owner in (model, adapters):
        assert isinstance(owner.buffer, ParameterBuffer)
        assert owner.flat_params is owner.buffer.flat_params
        assert owner.params is owner.buffer.params and owner.grads is owner.buffer.grads
    assert model.buffer.views(model.flat_grads)["ln_f.bias"].shape == (8,)


def test_adapter_shapes_follow_the_projections_of_parameter_shapes():
    config = GPTConfig(vocab_size=50, block_size=8, n_layer=3, n_head=2, n_embd=8)
    base = parameter_shapes(config)
    shapes = adapter_shapes(config, LoRAConfig(rank=4, targets=TARGETS))
    for i in range(config.n_layer):
        for target in TARGETS:
            c_in, c_out = base[f"h.{i}.{target}.weight"]
            assert shapes[f"h.{i}.{target}.lora_A.weight"] == (4, c_in)
            assert shapes[f"h.{i}.{target}.lora_B.weight"] == (c_out, 4)
    assert LoRAAdapters(config, LoRAConfig(rank=4)).shapes == shapes
