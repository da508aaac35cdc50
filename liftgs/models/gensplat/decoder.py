"""GenSplat's instance decoder: object queries over the pooled tokens -> instance masks and classes.

GenSplat summary, Key Designs 1, stage II (Instance-level Alignment): "The instance decoder
uses learnable object queries O_q (initialized with pooled semantics L^ to inject semantic
priors) and performs cross/self-attention with L^. After n layers, instance-level embeddings
O_ins are obtained. A mask head and classification head are added, supervised by 2D GT masks
using L_ins = L_ce + L_mask."

* Queries: Q of the m tokens are picked by farthest-point sampling over the token centroids;
  a query's positional encoding is that of its token's centroid plus a learned one, and it
  starts as a linear map of its token's latent plus that positional encoding plus a learned
  embedding (it knows what it starts on and where).
* Layers: :class:`liftgs.modules.decoder.DecoderLayer` without text attention:
  cross-attention to the tokens (keys carry the Fourier encoding of the scene-centred
  centroid, empty clusters masked out), self-attention among the queries, FFN.
* Heads, after every layer (earlier layers feed deep supervision): mask logits [Q, N] = the
  dot product of an MLP of the query with every Gaussian's mask feature, a linear map of its
  latent plus a Fourier encoding of its scene-centred centre. The latents of stage I are
  semantic, so two chairs have the same latents; the position term lets a query's mask pick
  one region (as LIFT-GS's per-voxel mask features do, :class:`FourierPosition`).
  Class logits [Q, K + 1] = two cosines to each class-name text embedding, each times a
  learned scale: of a linear map of the query, and of the query's *mask-pooled semantics*
  (the semantic head applied to the mean latent of the Gaussians under the query's mask,
  weighted by sigmoid(mask logits) without gradient: the stage-I text alignment used
  directly, as open-vocabulary 3D instance methods pool 2D features over a mask); plus a
  "no object" logit (a linear function of the query) as the last column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftgs.models.gensplat.pooling import PooledTokens
from liftgs.modules.decoder import DecoderLayer, farthest_tokens
from liftgs.modules.position import FourierPosition


@dataclass
class InstanceOutput:
    """Instance predictions over one scene's N Gaussians for K classes. The mask logits are
    transposed views of Gaussian-major [N, Q] blocks (``mask_logits.T`` is contiguous)."""

    mask_logits: Tensor  # [Q, N] over Gaussians (final layer)
    class_logits: Tensor  # [Q, K + 1], last column = "no object"
    aux: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # (mask_logits, class_logits) of the
    # earlier decoder layers, first layer first (deep supervision)
    queries: Tensor | None = None  # O_ins [Q, D], the final layer's query embeddings

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """(mask_logits, class_logits) of every layer, the final one last."""
        return [*self.aux, (self.mask_logits, self.class_logits)]


class InstanceDecoder(nn.Module):
    """Pooled tokens L^ + per-Gaussian latents + class text -> :class:`InstanceOutput`."""

    def __init__(self, latent_dim: int, text_dim: int, hidden_dim: int, num_layers: int, num_heads: int,
                 ffn_dim: int, dropout: float, num_queries: int, temperature_init: float = 0.07):
        super().__init__()
        C, D = latent_dim, hidden_dim
        self.num_queries = int(num_queries)
        self.token_in = nn.Sequential(nn.Linear(C, D), nn.LayerNorm(D))
        self.position = FourierPosition(D)
        self.position_mlp = nn.Sequential(nn.GELU(), nn.Linear(D, D))
        self.query_init = nn.Linear(C, D)  # semantic prior: the chosen tokens' latents
        self.query_feat = nn.Parameter(torch.randn(num_queries, D) * 0.02)
        self.query_pos = nn.Parameter(torch.randn(num_queries, D) * 0.02)
        self.layers = nn.ModuleList(DecoderLayer(D, num_heads, ffn_dim, dropout, text_attention=False)
                                    for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(D)
        self.mask_embed = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D), nn.GELU(), nn.Linear(D, D))
        self.mask_latent = nn.Linear(C, D)  # per-Gaussian mask features: latent ...
        self.mask_position = FourierPosition(D)  # ... plus position
        self.class_embed = nn.Linear(D, text_dim)
        self.no_object = nn.Linear(D, 1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))
        self.semantic_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))

    def positions(self, xyz: Tensor) -> Tensor:
        """Positional encoding [m, D] of scene-centred positions [m, 3]."""
        return self.position_mlp(self.position(xyz))

    def forward(self, latents: Tensor, means: Tensor, pooled: PooledTokens, class_text: Tensor,
                semantic_weight: Tensor) -> InstanceOutput:
        """latents [N, C] and centres [N, 3] of the Gaussians, their pooled tokens, class_text
        [K, text_dim], and the semantic head's weight [text_dim, C] (bias-free linear map)."""
        centre = pooled.scene_centre()
        xyz = pooled.xyz - centre
        pad = ~pooled.valid
        tokens = self.token_in(pooled.tokens)  # [m, D]
        pos = self.positions(xyz)
        keyed = (tokens + pos)[None]
        pick = farthest_tokens(xyz[None], pad[None], self.num_queries)[0]  # [Q] among valid tokens
        q_pos = (pos.index_select(0, pick) + self.query_pos)[None]
        # content: the token's latent (semantic prior) and where it is, so the mask head's
        # position term can place the query's mask from the first layer on
        q = (self.query_init(pooled.tokens.index_select(0, pick)) + q_pos[0] + self.query_feat)[None]  # [1, Q, D]
        embeddings, hidden = [], []
        for layer in self.layers:
            keys, values = layer.point_memory(tokens[None], keyed)
            q = layer(q, q_pos, keys, values, pad[None])
            h = self.out_norm(q[0])
            hidden.append(h)
            embeddings.append(self.mask_embed(h))
        # every layer's mask logits from one product against the Gaussians' mask features,
        # Gaussian-major [N, n * Q] (a renderer wants sigmoid(mask_logits).T, then contiguous)
        feats = self.mask_latent(latents) + self.mask_position(means - centre)  # [N, D]
        masks = [block.T for block in (feats @ torch.cat(embeddings).T).chunk(len(self.layers), dim=1)]
        # mask-pooled semantics of every layer's queries: [n * Q, C] -> text space
        weights = torch.sigmoid(torch.cat(masks).detach())  # [n * Q, N]
        pooled_latent = (weights @ latents) / weights.sum(1, keepdim=True).clamp_min(1e-6)
        semantic = F.normalize(F.linear(pooled_latent, semantic_weight), dim=-1).chunk(len(self.layers))
        text = F.normalize(class_text, dim=-1)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        semantic_scale = self.semantic_logit_scale.clamp(max=math.log(100.0)).exp()
        class_logits = []
        for h, sem in zip(hidden, semantic):
            cos = F.normalize(self.class_embed(h), dim=-1) @ text.T  # [Q, K]
            logits = cos * scale + (sem @ text.T) * semantic_scale
            class_logits.append(torch.cat([logits, self.no_object(h)], dim=1))
        preds = list(zip(masks, class_logits))
        return InstanceOutput(mask_logits=preds[-1][0], class_logits=preds[-1][1], aux=preds[:-1], queries=q[0])
