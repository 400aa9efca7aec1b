"""SAM's prompt encoder + mask decoder, rearranged so that a prompt costs as little as the algebra allows.

The official decoder projects the 4096 image tokens (64×64×256) with 256→128 matrices in every
cross-attention, for every prompt. With only N prompt tokens (N = 5 output tokens + the points,
usually 7-8) most of that work can move to the N side, exactly (the same real-number result; float32
rounding differs by ~1e-6):

* work that depends only on the image is done once per image (`FastImagePart`, the "image cache"):
  the layer-1 projections of the image tokens (token→image keys and values, image→token queries),
  which see only the embedding + the no-mask embedding + the positional encoding;
* token→image attention: scores q·(X W_kᵀ + b_k)ᵀ = (q W_k)·Xᵀ + const (the constant per query row
  cancels in the softmax), and softmax(s)·(X W_vᵀ + b_v) = (softmax(s)·X) W_vᵀ + b_v (each row of
  softmax(s) sums to 1): the image tokens X are touched by an 8N×256 matrix (8 heads × N tokens)
  instead of being projected by 256×128 ones;
* image→token attention: (X W_qᵀ + b_q)·K_hᵀ = X·(W_q,hᵀ K_hᵀ) + b_q,h K_hᵀ, and the output
  projection is folded into the values per head: Σ_h A_h (V_h W_o,hᵀ) + b_o;
* a mask prompt enters the image tokens only through the last 1×1 convolution of the mask
  downscaling (16→256 channels), so its effect on the cached projections is a rank-16 update with
  pre-multiplied weights (and without a mask prompt that work is skipped altogether);
* the LayerNorms over the image tokens take their statistics with matrix products (onnxruntime-web's
  LayerNormalization kernel is slow), and the two 2×2 stride-2 transposed convolutions are per-pixel
  matrix products whose sub-pixel outputs are put in place by one transpose of the final logits.

`FastPromptPart` is what runs per prompt; its outputs are those of the browser variant
(`iou_predictions` [1,4], `low_res_masks` [1,4,256,256]) and agree with the eager decoder to float
rounding (tests/test_fast_decoder.py checks them against PyTorch and the goldens). Everything is
float32, GELU is the exact (erf) one.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional, Tuple

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..modeling import Sam

# Names of the image cache tensors, in the order FastImagePart returns them and FastPromptPart takes
# them: three [heads=8, tokens=4096, head_dim=16] and one [tokens=4096, 256].
FAST_CACHE_SUFFIX = "_out"  # the cache outputs are named CACHE_NAMES + this suffix
CACHE_NAMES = ("cache_t2i_k", "cache_t2i_v", "cache_i2t_q", "cache_up")
TOKENS = 64 * 64
HEADS = 8


def cache_shapes(tokens: int = TOKENS) -> Dict[str, Tuple[int, ...]]:
    """Shape of each cache tensor for `tokens` image tokens (4096; 0 for the empty ones of the first run)."""
    shapes = {name: (HEADS, tokens, 16) for name in CACHE_NAMES[:3]}
    shapes["cache_up"] = (tokens, 256)
    return shapes


def _up_matrices(sam: Sam) -> Dict[str, torch.Tensor]:
    """The first upscaling conv (ConvTranspose2d 256→64, 2×2, stride 2: a per-pixel 256→256 map W with
    columns ordered (dy, dx, channel), bias b) composed with both norm4 LayerNorms (γ₁, β₁, γ₂, β₂):
    keys₂W + b = rs₂·(x₂Γ₂W − μ₂ γ₂ᵀW) + β₂W + b,  x₂Γ₂W = A₂(Z₂Γ₂W) + b_o₂Γ₂W + keys₁Γ₂W,
    keys₁Γ₂W = rs₁·(x₁Γ₁Γ₂W − μ₁ γ₁ᵀΓ₂W) + β₁Γ₂W,  x₁Γ₁Γ₂W = A₁(Z₁Γ₁Γ₂W) + src Γ₁Γ₂W."""
    dec = sam.mask_decoder
    conv = dec.output_upscaling[0]
    n1, n2 = dec.transformer.layers[0].norm4, dec.transformer.layers[1].norm4
    with torch.no_grad():
        w = conv.weight.detach().float().permute(0, 2, 3, 1).reshape(conv.weight.shape[0], -1)  # [256, 256]
        g2w = n2.weight.detach().float()[:, None] * w
        g12w = n1.weight.detach().float()[:, None] * g2w
        bo2 = dec.transformer.layers[1].cross_attn_image_to_token.out_proj.bias.detach().float()
        return {"g12w": g12w.contiguous(), "g2w": g2w.contiguous(),
                "u1": n1.weight.detach().float() @ g2w, "u2": n2.weight.detach().float() @ w,
                "v1": (n1.bias.detach().float() + bo2) @ g2w,
                "c": n2.bias.detach().float() @ w + conv.bias.detach().float().repeat(4)}


def _ln_tokens(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(n, heads*d) -> (heads, n, d)."""
    n, c = x.shape
    return x.reshape(n, heads, c // heads).transpose(0, 1)


def _dense_pe(sam: Sam) -> torch.Tensor:
    """The positional encoding of the 64×64 grid, token-major [4096, 256]."""
    with torch.no_grad():
        return sam.prompt_encoder.get_dense_pe()[0].reshape(-1, TOKENS).t().float().contiguous()


class FastImagePart(nn.Module):
    """Image embedding [1,256,64,64] -> the per-image cache (CACHE_NAMES), with src = embedding +
    no-mask embedding (the decoder's image tokens without a mask prompt):

    cache_t2i_k  [8,4096,16]  layer-1 token→image keys   (src + pe) W_kᵀ + b_k
    cache_t2i_v  [8,4096,16]  layer-1 token→image values src W_vᵀ + b_v
    cache_i2t_q  [8,4096,16]  layer-1 image→token queries ((src + pe) W_qᵀ + b_q) / √16
    cache_up     [4096,256]   (src + b_o) Γ₁Γ₂W, the image part of the first upscaling conv (see _up_matrices)
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        pe = sam.prompt_encoder
        layer = sam.mask_decoder.transformer.layers[0]
        self.register_buffer("pos", _dense_pe(sam))
        self.register_buffer("no_mask", pe.no_mask_embed.weight.detach().reshape(1, -1).clone().float())
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        self.t2i_k, self.t2i_v, self.i2t_q = t2i.k_proj, t2i.v_proj, i2t.q_proj
        self.i2t_scale = 1.0 / math.sqrt(i2t.internal_dim // i2t.num_heads)
        self.register_buffer("up_bias", i2t.out_proj.bias.detach().reshape(1, -1).clone().float())
        self.register_buffer("g12w", _up_matrices(sam)["g12w"])

    def forward(self, image_embeddings: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        src = image_embeddings.reshape(-1, TOKENS).t() + self.no_mask  # [T, 256]
        k = src + self.pos
        t2i_k = F.linear(k, self.t2i_k.weight, self.t2i_k.bias)
        t2i_v = F.linear(src, self.t2i_v.weight, self.t2i_v.bias)
        i2t_q = F.linear(k, self.i2t_q.weight * self.i2t_scale, self.i2t_q.bias * self.i2t_scale)
        up = (src + self.up_bias) @ self.g12w
        return tuple(_heads(t, HEADS).contiguous() for t in (t2i_k, t2i_v, i2t_q)) + (up,)


def _heads_batched(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, n, heads*d) -> (B, heads, n, d)."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _per_token(fn, x: torch.Tensor) -> torch.Tensor:
    """fn applied to the rows of x [B,N,C] as one [B·N,C] matrix (exported as one 2-D Gemm whatever B)."""
    b, n, c = x.shape
    return fn(x.reshape(b * n, c)).reshape(b, n, -1)


def _linear_per_token(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return _per_token(lambda rows: F.linear(rows, layer.weight, layer.bias), x)


class FastPromptPart(nn.Module):
    """The per-prompt decoder: the image embedding, its cache and the browser variant's prompt inputs
    for B prompts of N points each (point_coords [B,N,2], point_labels [B,N], mask_input [1,1,256,256],
    has_mask_input [1]) -> iou_predictions [B,4], low_res_masks [B,4,256,256], row b what prompt b
    alone gives (B = 1: the browser variant's outputs).

    `with_mask=False` builds the graph for has_mask_input = 0 (the mask prompt's terms left out, as
    multiplying them by 0 would); the exported model holds both and picks one by has_mask_input (a mask
    prompt applies to every prompt of the batch; the page sends one prompt with a mask a run).

    The image side is shared where it can be: the layer-1 attentions against the cached projections
    are single products over all B·N prompt tokens (the image tokens are read once, not B times); from
    the layer-1 image update on, the image tokens are each prompt's own, so the rest is batched matrix
    products over B.
    """

    def __init__(self, sam: Sam, with_mask: bool = True) -> None:
        super().__init__()
        pe = sam.prompt_encoder
        dec = sam.mask_decoder
        tr = dec.transformer
        self.with_mask = with_mask
        self.pe, self.dec, self.tr = pe, dec, tr
        self.img_size = sam.image_encoder.img_size
        l0, l1 = tr.layers[0], tr.layers[1]
        self.heads = l0.cross_attn_token_to_image.num_heads
        f32 = dict(dtype=torch.float32)
        with torch.no_grad():
            self.register_buffer("pos", _dense_pe(sam))
            no_mask = pe.no_mask_embed.weight.detach().float().reshape(-1)
            self.register_buffer("out_tokens", torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], 0).float())
            # x1 = embedding + no_mask + b_o (layer-1 image→token) + A₁Z₁ (+ the mask prompt's Δ)
            self.register_buffer("x1_bias", no_mask + l0.cross_attn_image_to_token.out_proj.bias.detach())
            self.register_buffer("mean_col", torch.full((256, 1), 1.0 / 256, **f32))
            self.register_buffer("mean_col64", torch.full((64, 1), 1.0 / 64, **f32))
            self.ln_eps = (l0.norm4.eps, l1.norm4.eps)
            # The mask prompt's last 1×1 conv (16 -> 256) and its products with layer 1's cached projections.
            conv = pe.mask_downscaling[-1]
            wc = conv.weight.detach().float()[:, :, 0, 0].t()  # [16, 256]
            bc = conv.bias.detach().float() - no_mask  # relative to the no-mask embedding
            t2i, i2t = l0.cross_attn_token_to_image, l0.cross_attn_image_to_token
            scale = 1.0 / math.sqrt(i2t.internal_dim // i2t.num_heads)
            up = _up_matrices(sam)
            self.register_buffer("mask_w", torch.cat([wc, wc @ t2i.k_proj.weight.t(), wc @ t2i.v_proj.weight.t(),
                                                      wc @ i2t.q_proj.weight.t() * scale, wc @ up["g12w"]], 1).contiguous())
            self.register_buffer("mask_b", torch.cat([bc, bc @ t2i.k_proj.weight.t(), bc @ t2i.v_proj.weight.t(),
                                                      bc @ i2t.q_proj.weight.t() * scale, bc @ up["g12w"]], 0))
            # The first upscaling conv through both LayerNorms (see _up_matrices), and the second one as a
            # per-pixel matrix, columns ordered (dy, dx, channel).
            for name, value in up.items():
                self.register_buffer("up_" + name, value)
            ln2d, up2 = dec.output_upscaling[1], dec.output_upscaling[3]
            self.register_buffer("up2_w", up2.weight.detach().permute(0, 2, 3, 1).reshape(up2.weight.shape[0], -1).contiguous())
            self.register_buffer("up2_b", up2.bias.detach().repeat(4))
            self.ln2d = ln2d

    # ---------------------------------------------------------------- prompt encoding
    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        pe = self.pe
        coords = (point_coords + 0.5) / self.img_size
        emb = pe.pe_layer._pe_encoding(coords)
        labels = point_labels.unsqueeze(-1).expand_as(emb)
        emb = emb * (labels != -1)
        emb = emb + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[i].weight * (labels == i)
        return emb

    def _mask_features(self, mask_input: torch.Tensor) -> torch.Tensor:
        """The mask downscaling without its last 1×1 conv: [1,1,256,256] -> [4096,16]."""
        x = mask_input
        for module in list(self.pe.mask_downscaling)[:-1]:
            x = module(x)
        return x.reshape(-1, TOKENS).t()

    # ---------------------------------------------------------------- building blocks
    @staticmethod
    def _layer_norm(x: torch.Tensor, ln: nn.Module, mean_col: torch.Tensor):
        """LayerNorm over the last axis of x [M, C], its statistics taken by matrix products with a
        [C, 1] column of 1/C (onnxruntime-web's LayerNormalization kernel is slow).
        Returns (normalised x, mean [M,1], 1/std [M,1])."""
        mu = x.mean(-1, keepdim=True)
        d = x - mu
        rs = 1.0 / torch.sqrt((d * d).mean(-1, keepdim=True) + ln.eps)
        return d * rs * ln.weight + ln.bias, mu, rs

    def _t2i_cached(self, attn, q: torch.Tensor, k_heads: torch.Tensor, v_heads: torch.Tensor) -> torch.Tensor:
        """Token→image attention of q [B,N,256] with the cached per-head image keys/values [8,T,16]."""
        b, n, _ = q.shape
        qp = _linear_per_token(q, attn.q_proj).reshape(b * n, self.heads, -1).transpose(0, 1)  # [8,BN,d]
        a = torch.softmax(qp @ k_heads.transpose(1, 2) / math.sqrt(qp.shape[-1]), -1)  # [8,BN,T]
        out = (a @ v_heads).transpose(0, 1).reshape(b, n, -1)  # [B,N,128]
        return _linear_per_token(out, attn.out_proj)

    def _t2i_folded(self, attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Token→image attention of q [B,N,256] over each prompt's image tokens k (with pe), v [B,T,256]:
        touched by [8N,256] matrices only."""
        b, n, _ = q.shape
        h = self.heads
        d = attn.internal_dim // h
        qp = _heads_batched(_linear_per_token(q, attn.q_proj), h)  # [B,8,N,d]
        g = (qp @ attn.k_proj.weight.reshape(h, d, -1)).reshape(b, h * n, -1) / math.sqrt(d)  # [B,8N,256]
        a = torch.softmax(g @ k.transpose(1, 2), -1)  # [B,8N,T]
        u = (a @ v).reshape(b, h, n, -1)  # [B,8,N,256]
        out = u @ attn.v_proj.weight.reshape(h, d, -1).transpose(1, 2) + attn.v_proj.bias.reshape(h, 1, d)
        return _linear_per_token(out.transpose(1, 2).reshape(b, n, -1), attn.out_proj)

    def _i2t_values(self, attn, tokens_v: torch.Tensor) -> torch.Tensor:
        """Image→token attention: Z [B, 8N, 256] with output = A Z + b_o (A: [B, T, 8N], softmax per head)."""
        b = tokens_v.shape[0]
        h = self.heads
        d = attn.internal_dim // h
        vp = _heads_batched(_linear_per_token(tokens_v, attn.v_proj), h)  # [B,8,N,d]
        z = vp @ attn.out_proj.weight.reshape(-1, h, d).permute(1, 2, 0)  # [B,8,N,256]
        return z.reshape(b, -1, z.shape[-1])

    def _i2t_attention(self, attn, tokens_k: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Image→token attention probabilities A [B, T, 8N] for each prompt's image queries k [B,T,256]."""
        b, n, _ = tokens_k.shape
        h = self.heads
        d = attn.internal_dim // h
        kp = _heads_batched(_linear_per_token(tokens_k, attn.k_proj), h)  # [B,8,N,d]
        scale = 1.0 / math.sqrt(d)
        m = (kp @ attn.q_proj.weight.reshape(h, d, -1)).reshape(b, h * n, -1) * scale  # [B,8N,256]
        c = (kp @ attn.q_proj.bias.reshape(h, d, 1)).reshape(b, 1, h * n) * scale  # [B,1,8N]
        s = (k @ m.transpose(1, 2) + c).reshape(b, -1, h, n)
        return torch.softmax(s, -1).reshape(b, -1, h * n)

    # ---------------------------------------------------------------- forward
    def forward(self, image_embeddings: torch.Tensor, cache_t2i_k: torch.Tensor, cache_t2i_v: torch.Tensor,
                cache_i2t_q: torch.Tensor, cache_up: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        tr = self.tr
        l0, l1 = tr.layers
        h = self.heads
        b = point_coords.shape[0]

        sparse = self._embed_points(point_coords, point_labels)  # [B,Ns,256]
        tokens = torch.cat([self.out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], 1)  # [B,N,256]
        n = tokens.shape[1]

        x = image_embeddings.reshape(-1, TOKENS).t()  # [T, 256], shared by the prompts
        t2i_k, t2i_v, i2t_q, up_src = cache_t2i_k, cache_t2i_v, cache_i2t_q, cache_up
        if self.with_mask:
            # src = embedding + no-mask embedding + h·Δ with Δ = D16 W_cᵀ + (b_c − no_mask); Δ's products
            # with the cached layer-1 projections are rank-16 updates.
            d16 = self._mask_features(mask_input) * has_mask_input  # [T,16]
            delta = d16 @ self.mask_w + self.mask_b * has_mask_input  # [T, 256 + 3·128 + 256]
            d_src, d_k, d_v, d_q, d_up = torch.split(delta, [256, 128, 128, 128, 256], 1)
            x = x + d_src
            up_src = up_src + d_up
            t2i_k = t2i_k + _heads(d_k, h)
            t2i_v = t2i_v + _heads(d_v, h)
            i2t_q = i2t_q + _heads(d_q, h)

        # ---- layer 1 (no pe added to the self-attention input); its attentions against the cached
        # projections run over all B·N tokens at once
        q = _ln_tokens(l0.self_attn(q=tokens, k=tokens, v=tokens), l0.norm1)
        q = _ln_tokens(q + self._t2i_cached(l0.cross_attn_token_to_image, q + tokens, t2i_k, t2i_v), l0.norm2)
        q = _ln_tokens(q + _per_token(l0.mlp, q), l0.norm3)
        attn = l0.cross_attn_image_to_token
        kp = _linear_per_token(q + tokens, attn.k_proj).reshape(b * n, h, -1).transpose(0, 1)  # [8,BN,16]
        s1 = (i2t_q @ kp.transpose(1, 2)).reshape(h, TOKENS, b, n)  # queries pre-scaled
        a1 = torch.softmax(s1, -1).permute(2, 1, 0, 3).reshape(b, TOKENS, h * n)  # [B,T,8N]
        z1 = self._i2t_values(attn, q)  # [B,8N,256]
        x1 = a1 @ z1 + (x + self.x1_bias)  # [B,T,256]: each prompt's own image tokens from here on
        keys, mu1, rs1 = self._layer_norm(x1, l0.norm4, self.mean_col)
        # the first upscaling conv, layer-1 part (see _up_matrices)
        up_w1 = torch.cat([z1 @ self.up_g12w, (-self.up_u1[None]).expand(b, -1, -1)], 1)  # [B,8N+1,256]
        up = rs1 * (torch.cat([a1, mu1], 2) @ up_w1 + up_src)

        # ---- layer 2
        qpe = q + tokens
        q = _ln_tokens(q + l1.self_attn(q=qpe, k=qpe, v=q), l1.norm1)
        k = keys + self.pos
        q = _ln_tokens(q + self._t2i_folded(l1.cross_attn_token_to_image, q + tokens, k, keys), l1.norm2)
        q = _ln_tokens(q + _per_token(l1.mlp, q), l1.norm3)
        attn = l1.cross_attn_image_to_token
        a2 = self._i2t_attention(attn, q + tokens, k)
        z2 = self._i2t_values(attn, q)
        x2 = a2 @ z2 + attn.out_proj.bias + keys
        keys, mu2, rs2 = self._layer_norm(x2, l1.norm4, self.mean_col)
        up_w2 = torch.cat([z2 @ self.up_g2w, (-self.up_u2[None]).expand(b, -1, -1)], 1)
        up = rs2 * (torch.cat([a2, mu2], 2) @ up_w2 + (up + self.up_v1)) + self.up_c

        # ---- final token→image attention; only the output tokens' queries are used after it
        q = q[:, :5]
        q = _ln_tokens(q + self._t2i_folded(tr.final_attn_token_to_image, q + tokens[:, :5], keys + self.pos, keys),
                       tr.norm_final_attn)
        return self._masks(q, up)

    def _masks(self, q: torch.Tensor, up: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Everything after the first upscaling conv: q [B,5,256], `up` [B,T,(dy,dx,64)] its output."""
        dec = self.dec
        b = q.shape[0]
        y = up.reshape(b, -1, 64)  # [B,(i,j,dy,dx),64]
        y = F.gelu(self._layer_norm(y, self.ln2d, self.mean_col64)[0])
        y = F.gelu(y @ self.up2_w + self.up2_b)  # [B,(i,j,dy,dx),(ey,ex,32)]
        hyper = torch.stack([mlp(q[:, 1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], 1)  # [B,4,32]
        masks = y.reshape(b, -1, 32) @ hyper.transpose(1, 2)  # [B,(i,j,dy,dx,ey,ex),4]
        masks = masks.reshape(b, 64, 64, 2, 2, 2, 2, 4).permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, 4, 256, 256)
        return dec.iou_prediction_head(q[:, 0]), masks


class FastDecoder(nn.Module):
    """Both parts in one module (for PyTorch-side checks): the browser variant's inputs and outputs."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.image_part = FastImagePart(sam)
        self.prompt_part = FastPromptPart(sam)

    @torch.no_grad()
    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        cache = self.image_part(image_embeddings)
        return self.prompt_part(image_embeddings, *cache, point_coords, point_labels, mask_input, has_mask_input)


# --------------------------------------------------------------------------- running the export

def run_fast_decoder(session, feeds: Dict[str, np.ndarray], cache: Optional[Dict[str, np.ndarray]] = None):
    """Run an onnxruntime session of the fast decoder: `feeds` as for the browser variant. Returns
    (iou_predictions, low_res_masks, cache); pass the cache back to skip the per-image work."""
    if cache is None:
        empties = {name: np.zeros(shape, np.float32) for name, shape in cache_shapes(0).items()}
        outs = session.run([n + FAST_CACHE_SUFFIX for n in CACHE_NAMES], {**feeds, **empties})
        cache = dict(zip(CACHE_NAMES, outs))
    iou, low_res = session.run(["iou_predictions", "low_res_masks"], {**feeds, **cache})
    return iou, low_res, cache


class FastDecoderSession:
    """The fast decoder in onnxruntime (CPU, float32) for the server's own decoding (segment
    everything, prompts on encoded images): the per-image work once (`image_inputs`, or
    `set_embedding` to keep it in the session), then `decode` per prompt. Outputs equal the PyTorch
    decoder's to float rounding (~1e-5 in the logits). `session.run` is thread-safe: several threads
    may decode at once, each passing its image's inputs."""

    def __init__(self, path: os.PathLike, threads: Optional[int] = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or max(1, torch.get_num_threads())
        self.session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        self._feeds = None
        self._no_mask = (np.zeros((1, 1, 256, 256), np.float32), np.zeros(1, np.float32))

    def image_inputs(self, embedding: np.ndarray) -> Dict[str, np.ndarray]:
        """The embedding ([1,256,64,64] float32) and its image cache (CACHE_NAMES, 10.5 MB): what
        `decode(image=...)` takes. Computed once per image; keep it for the image's later prompts."""
        emb = np.ascontiguousarray(embedding, dtype=np.float32).reshape(1, 256, 64, 64)
        feeds = {"image_embeddings": emb, "point_coords": np.zeros((1, 1, 2), np.float32),
                 "point_labels": -np.ones((1, 1), np.float32), "mask_input": self._no_mask[0],
                 "has_mask_input": self._no_mask[1]}
        _, _, cache = run_fast_decoder(self.session, feeds)
        return {"image_embeddings": emb, **cache}

    def set_embedding(self, embedding: np.ndarray) -> None:
        """Keep `image_inputs(embedding)` for the `decode` calls that pass no image."""
        self._feeds = self.image_inputs(embedding)

    def decode(self, point_coords: np.ndarray, point_labels: np.ndarray,
               mask_input: Optional[np.ndarray] = None,
               image: Optional[Dict[str, np.ndarray]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Points [N,2] in the 1024 frame (the padding point included, as the web demo feeds them),
        labels [N] -> iou_predictions [4], low_res_masks [4,256,256]. `image`: `image_inputs` of the
        image (default: the one `set_embedding` kept)."""
        image = image if image is not None else self._feeds
        if image is None:
            raise RuntimeError("set_embedding first, or pass image=image_inputs(embedding)")
        feeds = dict(image)
        feeds["point_coords"] = np.asarray(point_coords, np.float32).reshape(1, -1, 2)
        feeds["point_labels"] = np.asarray(point_labels, np.float32).reshape(1, -1)
        if mask_input is None:
            feeds["mask_input"], feeds["has_mask_input"] = self._no_mask
        else:
            feeds["mask_input"] = np.asarray(mask_input, np.float32).reshape(1, 1, 256, 256)
            feeds["has_mask_input"] = np.ones(1, np.float32)
        iou, low_res = self.session.run(["iou_predictions", "low_res_masks"], feeds)
        return iou[0], low_res[0]
