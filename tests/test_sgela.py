"""The SGE-LA model against a small numpy version of spec §9, plus its basic properties."""
import numpy as np
import pytest
import torch

from gaitcam.model.sgela import SGELA, SGELAConfig, count_macs, locality_mask


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _lstm_step(x, h, c, w_ih, w_hh, b):
    """PyTorch gate order: input, forget, cell, output."""
    gates = x @ w_ih.T + h @ w_hh.T + b
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def _numpy_axis(p, x, dec_in, layers):
    """Spec §9 steps 2-3 for one axis, in plain numpy with the torch model's weights `p`."""
    b, f, _ = x.shape
    hid = p["memory_layer.weight"].shape[0]
    h = [np.zeros((b, hid)) for _ in range(layers)]
    c = [np.zeros((b, hid)) for _ in range(layers)]
    memory = []
    for t in range(f):
        inp = x[:, t]
        for k in range(layers):
            h[k], c[k] = _lstm_step(inp, h[k], c[k], p[f"encoder.weight_ih_l{k}"], p[f"encoder.weight_hh_l{k}"],
                                    p[f"encoder.bias_ih_l{k}"] + p[f"encoder.bias_hh_l{k}"])
            inp = h[k]
        memory.append(inp)
    memory = np.stack(memory, 1)  # [B, f, H]
    keys = memory @ p["memory_layer.weight"].T
    attentional = np.zeros((b, hid))
    outs, alphas, contexts = [], [], []
    for t in range(f):
        inp = np.concatenate([dec_in[:, t], attentional], -1)
        for k in range(layers):
            h[k], c[k] = _lstm_step(inp, h[k], c[k], p[f"decoder.{k}.weight_ih"], p[f"decoder.{k}.weight_hh"],
                                    p[f"decoder.{k}.bias_ih"] + p[f"decoder.{k}.bias_hh"])
            inp = h[k]
        score = np.einsum("bsh,bh->bs", keys, inp)
        alpha = np.exp(score - score.max(1, keepdims=True))
        alpha /= alpha.sum(1, keepdims=True)
        context = np.einsum("bs,bsh->bh", alpha, memory)
        attentional = np.concatenate([inp, context], -1) @ p["attention_layer.weight"].T  # no tanh
        outs.append(attentional @ p["output_layer.weight"].T + p["output_layer.bias"])
        alphas.append(alpha)
        contexts.append(context)
    return np.stack(outs, 1), np.stack(alphas, 1), np.stack(contexts, 1)


@pytest.fixture
def small():
    torch.manual_seed(3)
    cfg = SGELAConfig(n_joints=4, f=5, hidden=7, layers=2)
    model = SGELA(cfg).double()
    with torch.no_grad():  # fixed, non-trivial weights (the TF init leaves biases at 0/1)
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    windows = torch.randn(3, cfg.f, cfg.n_joints, 3, dtype=torch.float64)
    return cfg, model, windows


def test_forward_and_losses_match_numpy_spec(small):
    cfg, model, windows = small
    out = model(windows)
    losses = model.window_losses(out)
    x = windows.numpy()
    rev = x[:, ::-1]
    total_rec, total_att = 0.0, 0.0
    mask = np.exp(-((np.arange(cfg.f)[None, :] - (cfg.f - 1 - np.arange(cfg.f))[:, None]) ** 2) / (2 * (cfg.f / 2) ** 2))
    for a, axis_model in enumerate(model.axes):
        p = {k: v.detach().numpy() for k, v in axis_model.state_dict().items()}
        rec, alpha, ctx = _numpy_axis(p, x[..., a], np.zeros_like(x[..., a]), cfg.layers)
        np.testing.assert_allclose(out.reconstruction[..., a].detach().numpy(), rec, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(out.alignments[:, a].detach().numpy(), alpha, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(out.contexts[..., a * cfg.hidden:(a + 1) * cfg.hidden].detach().numpy(), ctx,
                                   rtol=1e-9, atol=1e-10)
        total_rec += 0.5 * ((rec - rev[..., a]) ** 2).sum()
        total_att += 0.5 * (((1 - mask) * alpha) ** 2).sum()
    assert float(losses["reconstruction"].detach().sum()) == pytest.approx(total_rec, rel=1e-9)
    assert float(losses["attention"].detach().sum()) == pytest.approx(total_att, rel=1e-6)  # float32 mask
    l2 = 0.5 * sum((p.detach().numpy() ** 2).sum() for p in model.parameters())
    assert float(model.l2_penalty().detach()) == pytest.approx(l2, rel=1e-12)


def test_teacher_forcing_feeds_previous_target_while_training(small):
    cfg, model, windows = small
    model = SGELA(SGELAConfig(n_joints=4, f=5, hidden=7, decoder_input="teacher")).double()
    model.train()
    out = model(windows)
    x = windows.numpy()
    rev = x[:, ::-1]
    dec_in = np.concatenate([np.zeros_like(rev[:, :1]), rev[:, :-1]], 1)
    p = {k: v.detach().numpy() for k, v in model.axes[1].state_dict().items()}
    rec, _, _ = _numpy_axis(p, x[..., 1], dec_in[..., 1], 2)
    np.testing.assert_allclose(out.reconstruction[..., 1].detach().numpy(), rec, rtol=1e-9, atol=1e-10)


def test_teacher_mode_age_does_not_depend_on_targets(small):
    """At extraction the teacher-forced decoder runs free: equal windows, equal AGEs, and the
    AGE differs from the training-mode (teacher-forced) contexts."""
    _, _, windows = small
    model = SGELA(SGELAConfig(n_joints=4, f=5, hidden=7, decoder_input="teacher")).double()
    age = model.age(windows)
    assert model.training  # mode restored
    assert not torch.allclose(age, model(windows).contexts)
    assert torch.equal(age, model.age(windows.clone()))


def test_la_mask_for_f6():
    m = locality_mask(6)
    np.testing.assert_allclose(m[5].numpy(), [1, 0.946, 0.801, 0.607, 0.411, 0.249], atol=5e-4)
    assert torch.allclose(m.diagonal(), torch.ones(6)) is False  # reverse: the centre is f-1-t
    assert torch.allclose(m.flip(1).diagonal(), torch.ones(6))
    assert torch.allclose(locality_mask(6, reverse=False).diagonal(), torch.ones(6))


def test_targets_are_reversed_and_forward_ablation_is_not():
    w = torch.arange(6.0).reshape(1, 6, 1, 1).expand(2, 6, 20, 3)
    assert SGELA().targets(w)[0, :, 0, 0].tolist() == [5, 4, 3, 2, 1, 0]
    assert SGELA(SGELAConfig(reconstruction="forward")).targets(w)[0, :, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_ba_has_no_attention_loss():
    model = SGELA(SGELAConfig(attention="BA", hidden=8))
    assert set(model.window_losses(model(torch.randn(2, 6, 20, 3)))) == {"reconstruction"}


def test_loss_falls_on_a_small_batch():
    torch.manual_seed(0)
    model = SGELA(SGELAConfig(hidden=32))
    t = torch.linspace(0, 2 * np.pi, 6)
    windows = (torch.sin(t)[None, :, None, None] * torch.rand(16, 1, 20, 3) + torch.rand(16, 1, 20, 3)) * 0.5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = sum(model.window_losses(model(windows)).values()).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_age_shapes_and_determinism():
    torch.manual_seed(0)
    model = SGELA()
    model.train()
    w = torch.randn(4, 6, 20, 3)
    frame = model.age(w)
    assert frame.shape == (4, 6, 768)
    assert model.age(w, "window").shape == (4, 6 * 768)
    assert torch.equal(frame, model.age(w))
    assert torch.equal(model.age(w, "window"), frame.flatten(1))


def test_wrong_window_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected windows \[B, 6, 20, 3\]"):
        SGELA(SGELAConfig(hidden=8))(torch.randn(2, 6, 25, 3))


def test_default_model_size_and_cost_match_the_spec():
    model = SGELA()
    # spec §7.1: 2,081,812 per axis with TF's single LSTM bias; PyTorch keeps two bias vectors.
    tf_count = sum(p.numel() for p in model.parameters()) - sum(
        p.numel() for n, p in model.named_parameters() if "bias_hh" in n)
    assert tf_count == 3 * 2_081_812
    assert count_macs(SGELAConfig()) == pytest.approx(37.45e6, rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = SGELA()
    w = torch.randn(8, 6, 20, 3)
    cpu = model.age(w)
    gpu = model.cuda().age(w.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)


def test_contrastive_loss_is_nt_xent_over_pairs():
    torch.manual_seed(0)
    model = SGELA(SGELAConfig(hidden=8, contrastive=True, projection=4)).double()
    a = model(torch.randn(3, 6, 20, 3, dtype=torch.float64))
    b = model(torch.randn(3, 6, 20, 3, dtype=torch.float64))
    expected = 0.0
    for i, head in enumerate(model.heads):
        z = torch.cat([head(o.contexts[..., i * 8:(i + 1) * 8].flatten(1)) for o in (a, b)]).detach().numpy()
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        sim = z @ z.T / 0.5
        for k in range(6):
            pos = (k + 3) % 6
            others = [j for j in range(6) if j != k]
            expected += -(sim[k, pos] - np.log(np.exp(sim[k, others]).sum())) / 6
    assert model.contrastive_loss(a, b, 0.5).item() == pytest.approx(expected, rel=1e-9)
