"""TinyViT-5M image encoder of MobileSAM.

Same module names and parameter layout as the official `mobile_sam.pt`, so the
official weights load strictly. Input B×3×1024×1024 (normalised, padded),
output B×256×64×64.
"""
import itertools
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import LayerNorm2d


class Conv2d_BN(nn.Sequential):
    """Bias-free convolution `c` followed by batch norm `bn`."""

    def __init__(self, in_chans: int, out_chans: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_chans, out_chans, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two stride-2 convolutions: B×3×H×W -> B×C×H/4×W/4."""

    def __init__(self, in_chans: int, embed_dim: int, img_size: int) -> None:
        super().__init__()
        self.patches_resolution = (img_size // 4, img_size // 4)
        self.seq = nn.Sequential(
            Conv2d_BN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1×1 expand, 3×3 depthwise, 1×1 project) on B×C×H×W."""

    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2d_BN(in_chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, out_chans, ks=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(y + x)


class PatchMerging(nn.Module):
    """Downsampling between stages: tokens B×(H·W)×C or maps B×C×H×W -> tokens B×(H'·W')×C_out.

    As in MobileSAM, the last merge (to 320 channels) keeps the 64×64 resolution (stride 1).
    """

    def __init__(self, input_resolution: Tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """First stage: MBConv blocks on B×C×H×W, then an optional PatchMerging."""

    def __init__(self, dim: int, input_resolution: Tuple[int, int], depth: int, out_dim: int,
                 downsample: bool, conv_expand_ratio: float = 4.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, dim, conv_expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class Mlp(nn.Module):
    """Pre-norm MLP on tokens B×N×C."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def relative_offset_index(resolution: Tuple[int, int]) -> Tuple[torch.Tensor, int]:
    """Index of each (query, key) pair's |Δy|, |Δx| offset in the bias table.

    Returns an N×N long tensor (N = h·w) and the number of distinct offsets, numbered
    in order of first appearance, as TinyViT does.
    """
    points = list(itertools.product(range(resolution[0]), range(resolution[1])))
    offsets = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(offset, len(offsets)))
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n), len(offsets)


class Attention(nn.Module):
    """Multi-head self-attention with a learned relative-position bias, on windows B×N×C.

    The bias table `attention_biases` (heads × offsets) is gathered into heads×N×N on every
    call: it is cheap, and so it can never go stale after loading weights or `.to(device)`.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 resolution: Tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)
        idxs, n_offsets = relative_offset_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_offsets))
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(x)


def window_partition_tokens(x: torch.Tensor, hw: Tuple[int, int], window: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """B×(H·W)×C tokens -> (B·nH·nW)×(window²)×C windows, zero-padding H, W up to multiples."""
    h, w = hw
    b, _, c = x.shape
    x = x.view(b, h, w, c)
    pad_b = (window - h % window) % window
    pad_r = (window - w % window) % window
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    ph, pw = h + pad_b, w + pad_r
    x = x.view(b, ph // window, window, pw // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c), (ph, pw)


def window_unpartition_tokens(x: torch.Tensor, padded_hw: Tuple[int, int], hw: Tuple[int, int],
                              window: int) -> torch.Tensor:
    """Inverse of `window_partition_tokens`: windows -> B×(H·W)×C, padding dropped."""
    ph, pw = padded_hw
    h, w = hw
    c = x.shape[-1]
    x = x.view(-1, ph // window, pw // window, window, window, c).transpose(2, 3).reshape(-1, ph, pw, c)
    if ph > h or pw > w:
        x = x[:, :h, :w].contiguous()
    return x.view(x.shape[0], h * w, c)


class TinyViTBlock(nn.Module):
    """Windowed attention, a 3×3 depthwise conv, then an MLP, on tokens B×(H·W)×C."""

    def __init__(self, dim: int, input_resolution: Tuple[int, int], num_heads: int, window_size: int,
                 mlp_ratio: float = 4.0, local_conv_size: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, attn_ratio=1,
                              resolution=(window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2,
                                    groups=dim)

    def windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        if h == self.window_size and w == self.window_size:
            return self.attn(x)
        windows, padded = window_partition_tokens(x, (h, w), self.window_size)
        return window_unpartition_tokens(self.attn(windows), padded, (h, w), self.window_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, n, c = x.shape
        x = x + self.windowed_attention(x)
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.local_conv(x)
        x = x.view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """A TinyViT stage: blocks on B×(H·W)×C, then an optional PatchMerging."""

    def __init__(self, dim: int, input_resolution: Tuple[int, int], depth: int, num_heads: int,
                 window_size: int, out_dim: int, downsample: bool, mlp_ratio: float = 4.0,
                 local_conv_size: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)
        ])
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT backbone with SAM's neck: B×3×1024×1024 -> B×256×64×64.

    `norm_head` and `head` (ImageNet classifier) are unused but kept so the official
    checkpoint loads strictly.
    """

    def __init__(self, img_size: int = 1024, in_chans: int = 3, num_classes: int = 1000,
                 embed_dims: Sequence[int] = (64, 128, 160, 320), depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (2, 4, 5, 10), window_sizes: Sequence[int] = (7, 7, 14, 7),
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3,
                 out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], img_size)
        res = self.patch_embed.patches_resolution[0]
        n_stages = len(depths)
        layers: List[nn.Module] = []
        for i in range(n_stages):
            # The last stage keeps the resolution of the one before (stride-1 merge).
            scale = 2 ** (i - 1 if i == n_stages - 1 else i)
            resolution = (res // scale, res // scale)
            out_dim = embed_dims[min(i + 1, n_stages - 1)]
            downsample = i < n_stages - 1
            if i == 0:
                layers.append(ConvLayer(embed_dims[0], resolution, depths[0], out_dim, downsample,
                                        mbconv_expand_ratio))
            else:
                layers.append(BasicLayer(embed_dims[i], resolution, depths[i], num_heads[i],
                                         window_sizes[i], out_dim, downsample, mlp_ratio, local_conv_size))
        self.layers = nn.ModuleList(layers)
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.embedding_size = res // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.embedding_size, self.embedding_size, c).permute(0, 3, 1, 2)
        return self.neck(x)
