"""Optimizers (SGD, Adam, AdamW) and gradient clipping against torch.optim / torch.nn.utils."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab.nn import Parameter
from seqlab.nn.utils import clip_grad_norm_, flatten_parameters

SHAPES = [(7, 5), (5,), (3, 4, 3), (1,), (37,)]


def _make(rng, torch, shapes=SHAPES):
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [Parameter(v) for v in values]
    theirs = [torch.nn.Parameter(torch.tensor(v)) for v in values]
    return ours, theirs


def _run(torch, rng, ours_cls, theirs_cls, kwargs, steps=6, skip=None):
    """Runs both optimizers on the same gradient sequence; ``skip[s]`` lists parameters
    without a gradient at step s. Returns the per-step maximum relative difference."""
    ours, theirs = _make(rng, torch)
    opt = ours_cls(ours, **kwargs)
    topt = theirs_cls(theirs, **kwargs)
    for s in range(steps):
        missing = set() if skip is None else skip.get(s, set())
        for i, (p, tp) in enumerate(zip(ours, theirs, strict=True)):
            if i in missing:
                p.grad = None
                tp.grad = None
                continue
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g.copy()  # a fresh array each step: step() must copy it in
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=2e-6, atol=2e-7)
    return ours, theirs, opt


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True),
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=[str(k) for k in SGD_CASES])
def test_sgd_matches_torch(torch, rng, kwargs):
    _run(torch, rng, seqlab.optim.SGD, torch.optim.SGD, kwargs)


ADAM_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.02, amsgrad=True),
    dict(lr=0.01, amsgrad=True, weight_decay=0.05),
    dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, betas=(0.3, 0.5)),  # lerp's other branch (1 - beta1 >= 0.5)
    dict(lr=0.01, maximize=True),
]


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=[str(k) for k in ADAM_CASES])
def test_adam_matches_torch(torch, rng, kwargs):
    _run(torch, rng, seqlab.optim.Adam, torch.optim.Adam, kwargs)


ADAMW_CASES = [dict(lr=0.01), dict(lr=0.01, weight_decay=0.3), dict(lr=0.01, amsgrad=True)]


@pytest.mark.parametrize("kwargs", ADAMW_CASES, ids=[str(k) for k in ADAMW_CASES])
def test_adamw_matches_torch(torch, rng, kwargs):
    _run(torch, rng, seqlab.optim.AdamW, torch.optim.AdamW, kwargs)


@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        ("Adam", "Adam", dict(lr=0.01, weight_decay=0.1)),
        ("AdamW", "AdamW", dict(lr=0.01, amsgrad=True)),
        ("SGD", "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ],
)
def test_parameters_without_grad_are_skipped_like_torch(torch, rng, ours, theirs, kwargs):
    # parameter 1 has no gradient at the first two steps, parameter 3 at step 3
    skip = {0: {1}, 1: {1}, 3: {3}}
    _, _, opt = _run(
        torch, rng, getattr(seqlab.optim, ours), getattr(torch.optim, theirs), kwargs, 6, skip
    )
    assert list(opt.steps) == [6, 4, 6, 5, 6]


def test_large_flat_buffer_parallel_path_matches_torch(torch, rng):
    ours, theirs = _make(rng, torch, [(300, 400), (123457,)])
    opt = seqlab.optim.Adam(ours, lr=1e-3, weight_decay=0.01)
    topt = torch.optim.Adam(theirs, lr=1e-3, weight_decay=0.01)
    for _ in range(3):
        for p, tp in zip(ours, theirs, strict=True):
            g = rng.standard_normal(p.shape).astype(np.float32)
            if p.grad is None:
                p.grad = g
            else:
                p.grad[...] = g  # in place into the flat buffer (the fast path)
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    assert all(np.shares_memory(p.grad, opt.flat.grad) for p in ours)
    for p, tp in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=2e-6, atol=2e-7)


def test_flat_buffer_views_and_in_place_grads(rng):
    model = seqlab.nn.Sequential(seqlab.nn.Linear(4, 3), seqlab.nn.Tanh(), seqlab.nn.Linear(3, 2))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = seqlab.optim.SGD(model.parameters(), lr=0.1)
    flat = opt.flat
    assert flat.data.size == 4 * 3 + 3 + 3 * 2 + 2
    for name, p in model.named_parameters():
        assert np.shares_memory(p.data, flat.data)
        np.testing.assert_array_equal(p.data, before[name])
        assert p.grad is None
    x = rng.standard_normal((5, 4)).astype(np.float32)
    model(x).sum().backward()
    opt.step()  # copies the fresh gradients in and re-points p.grad
    grads = {k: p.grad.copy() for k, p in model.named_parameters()}
    for name, p in model.named_parameters():
        assert np.shares_memory(p.grad, flat.grad)
        np.testing.assert_allclose(p.data, before[name] - 0.1 * grads[name], rtol=1e-6, atol=1e-7)
    opt.zero_grad()
    assert not flat.grad.any()
    model(x).sum().backward()  # kernels accumulate into the views
    assert flat.grad.any()
    assert all(np.shares_memory(p.grad, flat.grad) for p in model.parameters())
    # in-place writes through p.data (load_state_dict) land in the flat buffer
    model.load_state_dict(before)
    np.testing.assert_array_equal(flat.data[:12], before["0.weight"].ravel())


def test_flatten_parameters_rejects_duplicates_and_non_parameters():
    p = Parameter(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"params\[1\]: the same parameter appears more than once"):
        flatten_parameters([p, p])
    with pytest.raises(TypeError, match=r"params\[0\]"):
        flatten_parameters([np.zeros(3)])
    with pytest.raises(TypeError, match=r"params\[0\]: expected a float32 tensor with requires"):
        flatten_parameters([seqlab.tensor(np.zeros(3, np.float32))])


def test_lr_change_and_param_groups_match_torch(torch, rng):
    ours, theirs = _make(rng, torch)
    opt = seqlab.optim.Adam(
        [{"params": ours[:2]}, {"params": ours[2:], "lr": 0.05, "weight_decay": 0.1}], lr=0.01
    )
    topt = torch.optim.Adam(
        [{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.05, "weight_decay": 0.1}], lr=0.01
    )
    for s in range(5):
        for group, tgroup in zip(opt.param_groups, topt.param_groups, strict=True):
            group["lr"] = tgroup["lr"] = tgroup["lr"] * 0.7 ** s
        for p, tp in zip(ours, theirs, strict=True):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
        ("Adam", dict(lr=0.01, amsgrad=True)),
        ("AdamW", dict(lr=0.01)),
    ],
)
def test_state_dict_round_trip_gives_identical_steps(rng, cls, kwargs):
    shapes = [(6, 4), (4,), (9,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(6)]

    def steps(opt, params, gs):
        for step_grads in gs:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.copy()
            opt.step()

    params = [Parameter(v) for v in init]
    opt = getattr(seqlab.optim, cls)(params, **kwargs)
    steps(opt, params, grads[:3])
    saved_params = [p.data.copy() for p in params]
    saved_state = opt.state_dict()
    steps(opt, params, grads[3:])

    resumed = [Parameter(v) for v in saved_params]
    opt2 = getattr(seqlab.optim, cls)(resumed, lr=123.0)
    opt2.load_state_dict(saved_state)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    steps(opt2, resumed, grads[3:])
    for a, b in zip(params, resumed, strict=True):
        np.testing.assert_array_equal(a.data, b.data)

    wrong = getattr(seqlab.optim, cls)([Parameter(np.zeros((5, 4), np.float32))], lr=0.1)
    with pytest.raises(ValueError, match="parameter sizes"):
        wrong.load_state_dict(saved_state)


def test_bad_hyperparameters_name_the_argument():
    p = [Parameter(np.zeros(3, np.float32))]
    with pytest.raises(ValueError, match=r"lr: expected a finite value >= 0, got -0.1"):
        seqlab.optim.SGD(p, lr=-0.1)
    with pytest.raises(ValueError, match="lr"):
        seqlab.optim.Adam(p, lr=float("nan"))
    with pytest.raises(ValueError, match="betas: beta2 must be in"):
        seqlab.optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        seqlab.optim.AdamW(p, eps=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        seqlab.optim.SGD(p, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="nesterov"):
        seqlab.optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        seqlab.optim.Adam([])
    with pytest.raises(ValueError, match="unknown options"):
        seqlab.optim.Adam([{"params": p, "momentum": 0.9}])
    opt = seqlab.optim.Adam(p, lr=0.1)
    opt.param_groups[0]["lr"] = -1.0
    p[0].grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="lr: expected a finite value >= 0, got -1.0"):
        opt.step()
    opt.param_groups[0]["lr"] = 0.1
    p[0].grad = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"parameter 0: grad has shape \(4,\), expected \(3,\)"):
        opt.step()


def test_core_optimizer_kernels_check_buffers():
    from seqlab import _core

    p = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"grad: expected shape \(4,\), got \(5,\)"):
        _core.sgd_step(p, np.zeros(5, np.float32), None, 0.1)
    with pytest.raises(TypeError, match="grad: expected dtype float32, got float64"):
        _core.sgd_step(p, np.zeros(4), None, 0.1)
    with pytest.raises(ValueError, match="momentum_buffer: required"):
        _core.sgd_step(p, np.zeros(4, np.float32), None, 0.1, 0.9)
    with pytest.raises(ValueError, match="lr: expected a finite value >= 0"):
        _core.sgd_step(p, np.zeros(4, np.float32), None, -0.1)
    z = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="max_exp_avg_sq: required when amsgrad"):
        _core.adam_step(p, z, z.copy(), z.copy(), None, 1, 0.1, amsgrad=True)
    with pytest.raises(ValueError, match="step: expected >= 1"):
        _core.adam_step(p, z, z.copy(), z.copy(), None, 0, 0.1)


# ---------------------------------------------------------------- clipping
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
@pytest.mark.parametrize("norm_type", [2.0, float("inf"), 1.0, 3.0])
def test_clip_grad_norm_matches_torch(torch, rng, max_norm, norm_type):
    ours, theirs = _make(rng, torch, [(70, 300), (11,), (3, 5), (40000,)])
    for p, tp in zip(ours, theirs, strict=True):
        g = rng.standard_normal(p.shape).astype(np.float32)
        p.grad = g
        tp.grad = torch.tensor(g)
    total = clip_grad_norm_(ours, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, ttotal.item(), rtol=1e-5)
    for p, tp in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_on_flat_buffer_and_edge_cases(rng):
    model = seqlab.nn.Linear(5, 4)
    opt = seqlab.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    opt.flat.grad[...] = 2.0  # 24 elements -> norm sqrt(96)
    total = clip_grad_norm_(model.parameters(), 1.0)
    np.testing.assert_allclose(total, np.sqrt(96.0), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(opt.flat.grad), 1.0, rtol=1e-5)
    assert clip_grad_norm_([Parameter(np.zeros(2, np.float32))], 1.0) == 0.0  # no grads
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(model.parameters(), -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(model.parameters(), 1.0, norm_type=0)


def test_training_steps_of_an_lstm_and_linear_head_match_torch(torch, rng):
    x = rng.standard_normal((4, 7, 5)).astype(np.float32)
    target = rng.standard_normal((4, 7, 2)).astype(np.float32)
    seqlab.manual_seed(0)
    lstm, head = seqlab.nn.LSTM(5, 6, num_layers=2, batch_first=True), seqlab.nn.Linear(6, 2)
    tlstm, thead = torch.nn.LSTM(5, 6, num_layers=2, batch_first=True), torch.nn.Linear(6, 2)
    for ours, theirs in ((lstm, tlstm), (head, thead)):
        theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    params = [*lstm.parameters(), *head.parameters()]
    opt = seqlab.optim.AdamW(params, lr=1e-2)
    topt = torch.optim.AdamW([*tlstm.parameters(), *thead.parameters()], lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        diff = head(lstm(x)[0]) - target
        (diff * diff).mean().backward()
        clip_grad_norm_(params, 0.1)
        opt.step()
        topt.zero_grad()
        tdiff = thead(tlstm(torch.tensor(x))[0]) - torch.tensor(target)
        (tdiff * tdiff).mean().backward()
        torch.nn.utils.clip_grad_norm_([*tlstm.parameters(), *thead.parameters()], 0.1)
        topt.step()
    for ours, theirs in ((lstm, tlstm), (head, thead)):
        tstate = theirs.state_dict()
        for k, v in ours.state_dict().items():
            np.testing.assert_allclose(v, tstate[k].numpy(), rtol=1e-4, atol=1e-6)
