"""PyTorch twins of seqlab models, built from a seqlab model's weights, for the benchmarks.

* :func:`torch_decoder` is :class:`seqlab.nn.RecurrentDecoder` written the way a PyTorch
  user writes it: a Python loop over timesteps with ``LSTMCell``/``GRUCell``/``RNNCell``,
  per-timestep teacher forcing, optional ``nn.MultiheadAttention`` over encoder states,
  and a ``Linear`` output.
* :func:`torch_autoencoder` is the poetry recipe's
  :class:`seqlab.models.SequenceAutoencoder`: packed ``nn.RNN``/``LSTM``/``GRU`` encoder,
  ``tanh(Linear)`` bottleneck and back, the decoder above started from it and reading
  the code beside its input at every step (``code_every_step``; seqlab adds it to the
  gates as ``gate_bias``, the same product).
* :func:`hybrid_loss` is :func:`seqlab.losses.cosine_mse_loss` (masked mean).

Same parameter names, layouts and values as the seqlab modules they are built from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}
_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _state(module: Any) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}


class TorchDecoder(nn.Module):
    """``RecurrentDecoder`` as a loop over timesteps.

    ``kv_once``: instead of calling ``MultiheadAttention`` at every step (which
    re-projects keys and values every step, as a user calling the module would), project
    them once per sequence and run ``scaled_dot_product_attention`` per step with the
    same weights: the hand-optimised loop.
    """

    def __init__(self, dec: Any, kv_once: bool = False, condition: Any = None) -> None:
        super().__init__()
        state = _state(dec)
        self.lstm = dec.cell == "lstm"
        weights = {k: state[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        extra = 0
        if condition is not None:  # the gate bias c W_ic^T: the cell reads [u_t; c]
            w_ic = torch.from_numpy(np.array(condition.weight.data))
            weights["weight_ih"] = torch.cat([weights["weight_ih"], w_ic], dim=1)
            extra = w_ic.shape[1]
        self.cell = _CELLS[dec.cell](dec.input_size + extra, dec.hidden_size)
        self.cell.load_state_dict(weights)
        self.out = nn.Linear(dec.out.in_features, dec.output_size)
        self.out.load_state_dict({"weight": state["out.weight"], "bias": state["out.bias"]})
        self.start = nn.Parameter(state["start"].clone())
        self.mha: nn.MultiheadAttention | None = None
        self.kv_once = kv_once
        if dec.attention is not None:
            a = dec.attention
            self.mha = nn.MultiheadAttention(a.embed_dim, a.num_heads, kdim=a.kdim, vdim=a.vdim,
                                             batch_first=True)
            self.mha.load_state_dict({k[len("attention."):]: v for k, v in state.items()
                                      if k.startswith("attention.")})

    def forward(self, y: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None,
                tf: torch.Tensor, memory: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions (B, T, E) for targets y (B, T, E), states (B, H) or None, a (B, T)
        bool teacher-forcing mask, memory (B, S, A) and its key padding mask (B, S), and
        a condition (B, C) read at every step beside the input (when built with one)."""
        batch, steps = y.shape[:2]
        hidden = self.cell.hidden_size
        if h is None:
            h = y.new_zeros(batch, hidden)
        if self.lstm and c is None:
            c = y.new_zeros(batch, hidden)
        mha = self.mha
        if mha is not None and self.kv_once:
            assert memory is not None
            heads = mha.num_heads
            w_q, w_k, w_v = (mha.in_proj_weight.chunk(3) if mha.in_proj_weight is not None
                             else (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight))
            b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
            keep = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]

            def heads_of(x: torch.Tensor) -> torch.Tensor:
                return x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2)

            keys = heads_of(F.linear(memory, w_k, b_k))
            values = heads_of(F.linear(memory, w_v, b_v))
        preds = []
        prev = None
        for t in range(steps):
            u = self.start.expand(batch, -1) if t == 0 else torch.where(tf[:, t : t + 1], y[:, t - 1], prev)
            if condition is not None:
                u = torch.cat([u, condition], dim=1)
            if self.lstm:
                h, c = self.cell(u, (h, c))
            else:
                h = self.cell(u, h)
            z = h
            if mha is not None and self.kv_once:
                q = F.linear(h, w_q, b_q).view(batch, heads, 1, -1)
                ctx = F.scaled_dot_product_attention(q, keys, values, attn_mask=keep)
                ctx = F.linear(ctx.reshape(batch, -1), mha.out_proj.weight, mha.out_proj.bias)
                z = torch.cat([h, ctx], dim=1)
            elif mha is not None:
                ctx, _ = mha(h.unsqueeze(1), memory, memory, key_padding_mask=key_padding_mask,
                             need_weights=False)
                z = torch.cat([h, ctx.squeeze(1)], dim=1)
            prev = self.out(z)
            preds.append(prev)
        return torch.stack(preds, dim=1)


def torch_decoder(dec: Any, kv_once: bool = False) -> TorchDecoder:
    """The PyTorch twin of a ``seqlab.nn.RecurrentDecoder`` (same weights)."""
    return TorchDecoder(dec, kv_once)


def hybrid_loss(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, cosine_weight: float = 0.9,
                mse_weight: float = 0.1, temperature: float = 1.0) -> torch.Tensor:
    """``seqlab.losses.cosine_mse_loss``: masked mean of w_c (1 - cos) / temp + w_m MSE."""
    tokens = (cosine_weight * (1 - F.cosine_similarity(pred, y, dim=-1)) / temperature
              + mse_weight * ((pred - y) ** 2).mean(-1))
    return (tokens * mask).sum() / mask.sum()


class TorchAutoencoder(nn.Module):
    """``SequenceAutoencoder``: encoder over packed sequences, bottleneck, decoder loop."""

    def __init__(self, model: Any, kv_once: bool = True) -> None:
        super().__init__()
        c = model.config
        self.directions = 2 if c.bidirectional else 1
        self.hidden = c.hidden_size
        self.lstm = c.cell == "lstm"
        self.encoder = _LAYERS[c.cell](model.embedding_dim, c.hidden_size, num_layers=c.num_layers,
                                       bidirectional=c.bidirectional, dropout=c.dropout,
                                       batch_first=True)
        self.encoder.load_state_dict(_state(model.encoder))
        self.to_code = nn.Linear(self.directions * c.hidden_size, c.bottleneck)
        self.to_code.load_state_dict(_state(model.to_code))
        self.from_code = nn.Linear(c.bottleneck, c.decoder_size)
        self.from_code.load_state_dict(_state(model.from_code))
        self.memory_dropout = c.memory_dropout
        self.code_every_step = model.code_to_gates is not None
        self.decoder = TorchDecoder(model.decoder, kv_once, model.code_to_gates)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, tf: torch.Tensor) -> torch.Tensor:
        """Reconstructions (B, T, E) of x (B, T, E) with lengths (B,) and teacher-forcing mask tf."""
        batch, steps = x.shape[:2]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        h_n = state[0] if self.lstm else state
        final = h_n[-self.directions:].transpose(0, 1).reshape(batch, self.directions * self.hidden)
        code = torch.tanh(self.to_code(final))
        h0 = torch.tanh(self.from_code(code))
        memory = kpm = None
        if self.decoder.mha is not None:
            memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
            kpm = torch.arange(steps)[None, :] >= lengths[:, None]
            if self.training and self.memory_dropout > 0:  # rows decoded from the code alone
                keep = torch.rand(batch) >= self.memory_dropout
                memory = memory * keep[:, None, None]
        return self.decoder(x, h0, None, tf, memory, kpm, code if self.code_every_step else None)


def torch_autoencoder(model: Any, kv_once: bool = True) -> TorchAutoencoder:
    """The PyTorch twin of a ``seqlab.models.SequenceAutoencoder`` (same weights)."""
    return TorchAutoencoder(model, kv_once)


class TorchPointerGenerator(nn.Module):
    """``seqlab.nn.PointerGeneratorDecoder`` as a PyTorch user writes it: a loop over
    timesteps with ``LSTMCell`` and ``MultiheadAttention`` (its head-averaged weights
    are the copy distribution), the vocabulary ``Linear`` over all steps, the gate
    ``sigmoid(gen([h; ctx; u]))``, the copy weights scattered onto the extended ids, and
    the masked mean NLL."""

    def __init__(self, dec: Any) -> None:
        super().__init__()
        state = _state(dec)
        self.cell = nn.LSTMCell(dec.input_size, dec.hidden_size)
        self.cell.load_state_dict({k: state[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        self.start = nn.Parameter(state["start"].clone())
        a = dec.attention
        self.mha = nn.MultiheadAttention(a.embed_dim, a.num_heads, kdim=a.kdim, vdim=a.vdim, batch_first=True)
        self.mha.load_state_dict({k[len("attention."):]: v for k, v in state.items()
                                  if k.startswith("attention.")})
        self.out = nn.Linear(2 * dec.hidden_size, dec.vocab_size)
        self.out.load_state_dict({"weight": state["out.weight"], "bias": state["out.bias"]})
        self.gen = nn.Linear(2 * dec.hidden_size + dec.input_size, 1)
        self.gen.load_state_dict({"weight": state["gen.weight"], "bias": state["gen.bias"]})

    def features(self, inputs: torch.Tensor, memory: torch.Tensor, key_padding_mask: torch.Tensor | None,
                 h: torch.Tensor | None = None, c: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per step [h; ctx] (B, T, 2H), the inputs u (B, T, E) and head-mean attention (B, T, S)."""
        batch, steps = inputs.shape[:2]
        if h is None:
            h = inputs.new_zeros(batch, self.cell.hidden_size)
        if c is None:
            c = inputs.new_zeros(batch, self.cell.hidden_size)
        zs, us, attns = [], [], []
        for t in range(steps):
            u = self.start.expand(batch, -1) if t == 0 else inputs[:, t - 1]
            h, c = self.cell(u, (h, c))
            ctx, attn = self.mha(h.unsqueeze(1), memory, memory, key_padding_mask=key_padding_mask,
                                 need_weights=True, average_attn_weights=True)
            zs.append(torch.cat([h, ctx.squeeze(1)], dim=1))
            us.append(u)
            attns.append(attn.squeeze(1))
        return torch.stack(zs, 1), torch.stack(us, 1), torch.stack(attns, 1)

    def distribution(self, z: torch.Tensor, u: torch.Tensor, attn: torch.Tensor, source_ids: torch.Tensor,
                     extended_size: int, logits: torch.Tensor | None = None) -> torch.Tensor:
        """P over the extended vocabulary (..., X) from features z, inputs u, attention attn
        (``logits``: the vocabulary logits when computed elsewhere, else ``self.out(z)``)."""
        p_vocab = torch.softmax(self.out(z) if logits is None else logits, dim=-1)
        p_gen = torch.sigmoid(self.gen(torch.cat([z, u], dim=-1)))
        pad = p_vocab.new_zeros(*p_vocab.shape[:-1], extended_size - p_vocab.shape[-1])
        mixed = torch.cat([p_gen * p_vocab, pad], dim=-1)
        index = source_ids.unsqueeze(-2).expand(*attn.shape[:-1], source_ids.shape[-1])
        return mixed.scatter_add(-1, index, (1 - p_gen) * attn)

    def forward(self, inputs: torch.Tensor, memory: torch.Tensor, source_ids: torch.Tensor,
                target_ids: torch.Tensor, target_mask: torch.Tensor, extended_size: int,
                key_padding_mask: torch.Tensor | None = None, h: torch.Tensor | None = None,
                c: torch.Tensor | None = None) -> torch.Tensor:
        z, u, attn = self.features(inputs, memory, key_padding_mask, h, c)
        p = self.distribution(z, u, attn, source_ids, extended_size)
        p_y = p.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
        mask = target_mask.to(p_y.dtype)
        return -(torch.log(p_y + 1e-12) * mask).sum() / mask.sum().clamp(min=1)


def torch_pointer_generator(dec: Any) -> TorchPointerGenerator:
    """The PyTorch twin of a ``seqlab.nn.PointerGeneratorDecoder`` (same weights)."""
    return TorchPointerGenerator(dec)


class TorchCodeSeq2Seq(nn.Module):
    """``seqlab.models.code.CodeSeq2Seq``: shared embedding, packed bidirectional LSTM
    encoder, tanh/linear bridges from the last layer's final states, and the
    pointer-generator decoder loop above."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        c = model.config
        self.hidden = c.hidden_size
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim)
        self.embedding.load_state_dict(_state(model.embedding))
        self.encoder = nn.LSTM(c.embedding_dim, c.hidden_size, num_layers=c.num_layers, bidirectional=True,
                               dropout=c.dropout, batch_first=True)
        self.encoder.load_state_dict(_state(model.encoder))
        self.bridge_h = nn.Linear(2 * c.hidden_size, c.hidden_size)
        self.bridge_h.load_state_dict(_state(model.bridge_h))
        self.bridge_c = nn.Linear(2 * c.hidden_size, c.hidden_size)
        self.bridge_c.load_state_dict(_state(model.bridge_c))
        self.decoder = TorchPointerGenerator(model.decoder)
        self.dropout = nn.Dropout(c.dropout)

    def encode(self, source_ids: torch.Tensor, source_lengths: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memory (B, S, 2H), its key padding mask (B, S) and the decoder's h0, c0 (B, H)."""
        batch, steps = source_ids.shape
        x = self.dropout(self.embedding(source_ids))
        packed = nn.utils.rnn.pack_padded_sequence(x, source_lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
        kpm = torch.arange(steps)[None, :] >= source_lengths[:, None]

        def last_layer(state: torch.Tensor) -> torch.Tensor:
            return state[-2:].transpose(0, 1).reshape(batch, 2 * self.hidden)

        h0 = torch.tanh(self.bridge_h(last_layer(h_n)))
        return memory, kpm, h0, self.bridge_c(last_layer(c_n))

    def forward(self, source_ids: torch.Tensor, source_lengths: torch.Tensor, source_ext_ids: torch.Tensor,
                target_ids: torch.Tensor, target_ext_ids: torch.Tensor, target_lengths: torch.Tensor,
                extended_size: int) -> torch.Tensor:
        memory, kpm, h0, c0 = self.encode(source_ids, source_lengths)
        mask = torch.arange(target_ids.shape[1])[None, :] < target_lengths[:, None]
        inputs = self.dropout(self.embedding(target_ids))
        return self.decoder(inputs, memory, source_ext_ids, target_ext_ids, mask, extended_size, kpm, h0, c0)


def torch_code_seq2seq(model: Any) -> TorchCodeSeq2Seq:
    """The PyTorch twin of a ``seqlab.models.code.CodeSeq2Seq`` (same weights)."""
    return TorchCodeSeq2Seq(model)


class TorchDecoderSession:
    """Incremental decoding with a :class:`TorchCodeSeq2Seq`, the way a PyTorch user
    writes it by hand: the encoder once, the keys and values projected once, then per
    token ``LSTMCell``, the query, the heads' scores and softmax over the cached keys,
    the vocabulary ``Linear``, the gate and the copy ``scatter_add``. The same
    :class:`~seqlab.models.code.search.StepSession` as seqlab's ``DecoderSession``, so
    the search strategies above it are shared.

    ``precision="bf16"``: the vocabulary ``Linear`` runs in bf16 (a bf16 copy of its weight
    made once here, the features cast per step, torch's bf16 GEMM), what a PyTorch user
    does to halve the weight's bytes; nothing is re-scored, so near ties may rank
    differently from fp32."""

    def __init__(self, twin: TorchCodeSeq2Seq, source_ids: Any, source_lengths: Any, source_ext_ids: Any,
                 extended_size: int, unk_id: int, precision: str = "fp32") -> None:
        self.twin = twin.eval()
        self.w_out16 = twin.decoder.out.weight.detach().bfloat16() if precision == "bf16" else None
        self.batch = int(np.asarray(source_ids).shape[0])
        self.extended_size = int(extended_size)
        self.unk_id = int(unk_id)
        dec = twin.decoder
        self.vocab_size = dec.out.out_features
        mha = dec.mha
        self.heads = mha.num_heads
        hidden = mha.embed_dim
        w_q, w_k, w_v = (mha.in_proj_weight.chunk(3) if mha.in_proj_weight is not None
                         else (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight))
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        self.w_q, self.b_q = w_q, b_q
        with torch.no_grad():
            memory, kpm, h0, c0 = twin.encode(torch.as_tensor(np.asarray(source_ids, dtype=np.int64)),
                                              torch.as_tensor(np.asarray(source_lengths, dtype=np.int64)))
            split = (self.batch, -1, self.heads, hidden // self.heads)
            self.keys = F.linear(memory, w_k, b_k).view(split).transpose(1, 2)  # (B, heads, S, hd)
            self.values = F.linear(memory, w_v, b_v).view(split).transpose(1, 2)
        self.kpm = kpm
        self.h0, self.c0 = h0, c0
        self.source = torch.as_tensor(np.asarray(source_ext_ids, dtype=np.int64))

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.h0.numpy().copy(), self.c0.numpy().copy()

    @torch.no_grad()
    def _step(self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dec = self.twin.decoder
        r = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        n = r.numel()
        if prev is None:
            u = dec.start.expand(n, -1)
        else:
            ids = torch.as_tensor(np.asarray(prev, dtype=np.int64))
            u = self.twin.embedding(torch.where(ids >= self.vocab_size, self.unk_id, ids))
        h_t, c_t = dec.cell(u, (torch.as_tensor(h), torch.as_tensor(c)))
        q = F.linear(h_t, self.w_q, self.b_q).view(n, self.heads, 1, -1)
        keys, values = self.keys[r], self.values[r]
        scores = (q @ keys.transpose(-1, -2)) / q.shape[-1] ** 0.5  # (n, heads, 1, S)
        scores = scores.masked_fill(self.kpm[r][:, None, None, :], float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        ctx = F.linear((attn @ values).reshape(n, -1), dec.mha.out_proj.weight, dec.mha.out_proj.bias)
        z = torch.cat([h_t, ctx], dim=1)[:, None]
        logits = None
        if self.w_out16 is not None:
            logits = F.linear(z.bfloat16(), self.w_out16).float() + dec.out.bias
        p = dec.distribution(z, u[:, None], attn.mean(dim=1), self.source[r], self.extended_size, logits)
        return torch.log(p[:, 0]), h_t, c_t

    def step(self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logp, h_t, c_t = self._step(rows, prev, h, c)
        return logp.numpy(), h_t.numpy(), c_t.numpy()

    def step_top_k(self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each row's k most likely next ids by ``torch.topk``, as a PyTorch beam search reads them."""
        logp, h_t, c_t = self._step(rows, prev, h, c)
        values, ids = torch.topk(logp, min(k, logp.shape[1]), dim=1)
        return values.numpy(), ids.numpy(), h_t.numpy(), c_t.numpy()


class TorchGPT(nn.Module):
    """The code LM's :class:`seqlab.models.code_lm.GPT` written nanoGPT-style: token and
    position embeddings, pre-LN blocks with one fused q/k/v projection and
    ``scaled_dot_product_attention(is_causal=True)``, tanh-GELU MLP, final LayerNorm, the
    output tied to the token embedding. ``forward(ids, past)`` with ``past`` a list of
    per-layer (k, v) caches runs only the new tokens (its own KV cache, as nanoGPT-style
    generation code does); ``past=None`` runs the whole sequence.
    """

    def __init__(self, gpt: Any) -> None:
        super().__init__()
        c = gpt.config
        self.n_heads, self.d_model = c.n_heads, c.d_model
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        self.wpe = nn.Embedding(c.max_len, c.d_model)
        self.blocks = nn.ModuleList()
        for _ in range(c.n_layers):
            block = nn.Module()
            block.ln_1 = nn.LayerNorm(c.d_model)
            block.qkv = nn.Linear(c.d_model, 3 * c.d_model)
            block.proj = nn.Linear(c.d_model, c.d_model)
            block.ln_2 = nn.LayerNorm(c.d_model)
            block.fc = nn.Linear(c.d_model, c.d_ff)
            block.out = nn.Linear(c.d_ff, c.d_model)
            self.blocks.append(block)
        self.ln_f = nn.LayerNorm(c.d_model)
        state = _state(gpt)
        names = {"ln_1": "ln_1", "qkv": "attn.in_proj", "proj": "attn.out_proj", "ln_2": "ln_2",
                 "fc": "mlp.0",
                 "out": "mlp.2"}
        with torch.no_grad():
            self.wte.weight.copy_(state["wte.weight"])
            self.wpe.weight.copy_(state["wpe.weight"])
            self.ln_f.weight.copy_(state["ln_f.weight"])
            self.ln_f.bias.copy_(state["ln_f.bias"])
            for i, block in enumerate(self.blocks):
                for ours, theirs in names.items():
                    mod = getattr(block, ours)
                    w = f"blocks.{i}.{theirs}_weight" if ours == "qkv" else f"blocks.{i}.{theirs}.weight"
                    b = f"blocks.{i}.{theirs}_bias" if ours == "qkv" else f"blocks.{i}.{theirs}.bias"
                    mod.weight.copy_(state[w])
                    mod.bias.copy_(state[b])

    def forward(self, ids: torch.Tensor, past: list[Any] | None = None) -> tuple[torch.Tensor, list[Any]]:
        B, T = ids.shape
        start = 0 if not past else past[0][0].shape[2]
        x = self.wte(ids) + self.wpe(torch.arange(start, start + T))
        H, E = self.n_heads, self.d_model
        new_past = []
        for i, block in enumerate(self.blocks):
            q, k, v = block.qkv(block.ln_1(x)).split(E, dim=2)
            q, k, v = (a.view(B, T, H, E // H).transpose(1, 2) for a in (q, k, v))
            if past:
                k = torch.cat([past[i][0], k], dim=2)
                v = torch.cat([past[i][1], v], dim=2)
            new_past.append((k, v))
            # one new query sees every cached key; a prefix of T queries is causal
            a = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
            x = x + block.proj(a.transpose(1, 2).reshape(B, T, E))
            x = x + block.out(F.gelu(block.fc(block.ln_2(x)), approximate="tanh"))
        return self.ln_f(x) @ self.wte.weight.T, new_past
