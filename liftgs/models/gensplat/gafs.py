"""The learned relevance scorer of GenSplat's geometry-aware frame selector (GAFS).

GenSplat summary, Key Designs 3 ("GAFS Geometry-Aware Frame Selector"): "Each image is encoded
via a VLM visual encoder to get V_i, then projected to visual embeddings v_i. The text Q is
similarly processed into query vector q^. For each view, its visible 3D Gaussian semantic
features L_i (including CLIP-aligned embeddings and precise 3D positions) are extracted as
geometric context and fused into visual embeddings v^_i via cross-attention. Relevance scores
s_i are computed as the cosine similarity between v^_i and q^, supervised by BCE." Its ablation
"GAFS 2D views only" (Table 4, VII) removes the geometric features.

:class:`FrameScorer` (sizes in :class:`FrameScorerConfig`), for one scene and one text:

* **v_i**: a trainable small CNN on the view image (:class:`liftgs.models.gensplat.compact.ImageEncoder`,
  images resized to ``image_size``), or precomputed embeddings [V, view_dim] from a vision tower
  (``view_dim > 0``; ``forward(view_embeddings=...)``), through ``view_proj`` to width D.
* **L_i**: each view's visible Gaussians as a **padded set**: latents [V, M, C], scene-centred
  positions [V, M, 3] and ``gaussian_mask`` bool [V, M] (True = a real Gaussian). A key / value
  token is ``LayerNorm(W l_j + FourierPosition(x_j))``. :func:`visible_gaussians` and
  :func:`gather_view_gaussians` build these sets from a Gaussian cloud and the cameras.
* **fusion** (mode ``"geometry"``): ``num_layers`` pre-norm blocks, cross-attention with v_i as
  the single query over its view's tokens (padding masked out) plus an FFN, both residual. A view
  that sees no Gaussian keeps v_i (its attention term is zero). Mode ``"views"`` (the "2D views
  only" ablation) has no fusion blocks and ignores any Gaussian inputs: v^_i = v_i.
* **s_i**: cos(out_proj(v^_i), text_proj(q)) for the text embedding q [T] (from the project's
  frozen text encoder), then ``logits = scale * cos + bias`` with a learned scale (CLIP-style,
  stored as its log, capped at 100) and a learned bias. The summary names a cosine under a BCE;
  the scale and bias make that cosine usable as a BCE logit and do not change the ranking.
* **geometric evidence** (``evidence=True``, mode ``"geometry"``; ours, not in the summary):
  ``logits += gamma * z_i`` with a learned gamma (init :data:`EVIDENCE_INIT`), z the evidence
  standardised over the scene's views (:func:`standardise`: zero mean, unit spread, so its weight
  against the learned cosine does not depend on how far apart one text's cosines happen to lie),
  e_i = max over the Gaussians view i sees of cos(f_j, q), f_j = the stage-II semantic head's
  CLIP-aligned embedding of latent l_j (``semantic_weight``, a frozen copy of
  :meth:`GenSplat.semantic_head`'s map set by :meth:`FrameScorer.set_semantic_head`, saved with
  the scorer). The summary's L_i "include CLIP-aligned embeddings"; a single fusion query trained
  on a few dozen rooms did not learn to read them (its held-out view recall matched the 2D-only
  scorer's), while this explicit match between the text and what the view sees carries over to
  new rooms. ``view_evidence`` computes e_i from all N latents and the views' seen masks.

:meth:`FrameScorer.save_pretrained` / :meth:`FrameScorer.from_pretrained`: a folder with
``frames.json`` (format ``liftgs-frame-scorer``, the config) and ``model.safetensors`` (no pickle).

:func:`frame_scorer_loss` is the BCE against per-view labels
(:func:`liftgs.models.gensplat.frames.target_visibility`); :func:`rank_and_select` feeds the
scores to :func:`liftgs.models.gensplat.frames.select_views` (redundancy suppression).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftgs.config import ConfigError, save_json_atomic, to_dict, update_config
from liftgs.files import atomic_dir
from liftgs.models.gensplat.compact import ImageEncoder, _one_line
from liftgs.models.gensplat.frames import select_views
from liftgs.modules.position import FourierPosition
from liftgs.runtime import fork_rng

MODES = ("geometry", "views")
MAX_LOG_SCALE = math.log(100.0)  # the learned scale is capped at 100 (CLIP's cap)
EVIDENCE_INIT = 10.0  # initial gamma of the standardised geometric evidence term (logits per standard deviation)
NEAR_PLANE = 0.01  # camera z at or below this is not "in front" (the renderer's near plane)
FORMAT = "liftgs-frame-scorer"  # frames.json field "format"
CONFIG_NAME = "frames.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class FrameScorerConfig:
    """Sizes of :class:`FrameScorer`."""

    text_dim: int = 384  # T: width of the text embedding q (MiniLM: 384)
    latent_dim: int = 32  # C: width of the per-Gaussian semantic latents (GenSplatConfig.latent_dim)
    dim: int = 128  # D: width of v_i, the Gaussian tokens and the fusion blocks
    embed_dim: int = 128  # width of the joint space the cosine is taken in
    num_heads: int = 4  # attention heads (D must be divisible by it)
    num_layers: int = 1  # fusion blocks (cross-attention + FFN)
    ffn_dim: int = 256
    mode: str = "geometry"  # "geometry": fuse the visible Gaussians; "views": 2D views only (ablation)
    view_dim: int = 0  # 0: the CNN encodes images; > 0: precomputed view embeddings of this width
    image_size: int = 64  # CNN input: views resized to image_size x image_size
    cnn_channels: tuple[int, ...] = (32, 64, 128)  # one stride-2 conv per entry (compact.ImageEncoder)
    init_scale: float = 10.0  # initial value of the learned cosine scale
    evidence: bool = False  # mode "geometry": add gamma * max_j cos(semantic_head(l_j), q) over each view's Gaussians

    def __post_init__(self) -> None:
        for name in ("text_dim", "latent_dim", "dim", "embed_dim", "num_heads", "num_layers", "ffn_dim",
                     "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FrameScorerConfig.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.view_dim, bool) or not isinstance(self.view_dim, int) or self.view_dim < 0:
            raise ValueError(f"FrameScorerConfig.view_dim must be an integer >= 0, got {self.view_dim!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"FrameScorerConfig.dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.mode not in MODES:
            raise ValueError(f"FrameScorerConfig.mode must be one of {list(MODES)}, got {self.mode!r}")
        if not self.cnn_channels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1
                                            for c in self.cnn_channels):
            raise ValueError(f"FrameScorerConfig.cnn_channels must be non-empty integers >= 1, "
                             f"got {self.cnn_channels!r}")
        if self.evidence and self.mode != "geometry":
            raise ValueError("FrameScorerConfig.evidence needs mode 'geometry' (the 2D-only scorer reads no Gaussians)")
        if not (math.isfinite(self.init_scale) and 0.0 < self.init_scale <= 100.0):
            raise ValueError(f"FrameScorerConfig.init_scale must be in (0, 100], got {self.init_scale}")


@dataclass
class FrameScores:
    """Output of :class:`FrameScorer` for V views: ``logits`` [V] = scale * cosine + bias (the
    BCE logits and the ranking scores), ``cosine`` [V], ``fused`` [V, D] (v^_i)."""

    logits: Tensor
    cosine: Tensor
    fused: Tensor


class _FusionBlock(nn.Module):
    """Pre-norm cross-attention (one query per view over its Gaussian tokens) + FFN, residual."""

    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))

    def forward(self, v: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """v [V, D], tokens [V, M, D], mask bool [V, M] (True = real) -> [V, D]."""
        has_any = mask.any(dim=1)
        # A view without Gaussians would attend over nothing (NaN); give it one dummy key and
        # drop its attention term below.
        padding = ~mask
        padding[:, 0] &= has_any
        out, _ = self.attn(self.norm_q(v)[:, None], tokens, tokens, key_padding_mask=padding, need_weights=False)
        v = v + out[:, 0] * has_any[:, None].to(v.dtype)
        return v + self.ffn(self.norm_ffn(v))


class FrameScorer(nn.Module):
    """GAFS's relevance scorer (module docstring). Parameters are initialised inside
    :func:`liftgs.runtime.fork_rng` seeded with ``seed``: the caller's RNG is left as it was."""

    def __init__(self, config: FrameScorerConfig | None = None, *, seed: int = 0):
        super().__init__()
        config = FrameScorerConfig() if config is None else config
        if not isinstance(config, FrameScorerConfig):
            raise ValueError(f"config must be a FrameScorerConfig, got {type(config).__name__}")
        self.config = config
        c = config
        with fork_rng(seed):
            if c.view_dim > 0:
                self.image_encoder = None
                self.view_proj = nn.Linear(c.view_dim, c.dim)
            else:
                self.image_encoder = ImageEncoder(c.cnn_channels)
                self.view_proj = nn.Linear(self.image_encoder.out_dim, c.dim)
            if c.mode == "geometry":
                self.latent_proj = nn.Linear(c.latent_dim, c.dim)
                self.position = FourierPosition(c.dim)
                self.token_norm = nn.LayerNorm(c.dim)
                self.blocks = nn.ModuleList(_FusionBlock(c.dim, c.num_heads, c.ffn_dim) for _ in range(c.num_layers))
            else:
                self.latent_proj = self.position = self.token_norm = None
                self.blocks = nn.ModuleList()
            self.out_norm = nn.LayerNorm(c.dim)
            self.out_proj = nn.Linear(c.dim, c.embed_dim)
            self.text_proj = nn.Linear(c.text_dim, c.embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(c.init_scale)))
        self.bias = nn.Parameter(torch.zeros(()))
        if c.evidence:
            self.register_buffer("semantic_weight", torch.zeros(c.text_dim, c.latent_dim))
            self.evidence_scale = nn.Parameter(torch.tensor(EVIDENCE_INIT))
        else:
            self.semantic_weight = None
            self.evidence_scale = None

    @property
    def device(self) -> torch.device:
        return self.out_proj.weight.device

    # ------------------------------------------------------------------ parts
    def encode_views(self, images: Tensor | None = None, view_embeddings: Tensor | None = None) -> Tensor:
        """v_i [V, D] from images [V, 3, H, W] in [0, 1] (CNN) or from ``view_embeddings``
        [V, view_dim] (whichever the config asks for)."""
        c = self.config
        if (images is None) == (view_embeddings is None):
            raise ValueError("give exactly one of images [V, 3, H, W] and view_embeddings [V, view_dim]")
        if c.view_dim > 0:
            if view_embeddings is None:
                raise ValueError(f"this scorer takes view_embeddings [V, {c.view_dim}] (FrameScorerConfig.view_dim "
                                 f"> 0), not images")
            x = _check_tensor("view_embeddings", view_embeddings, (None, c.view_dim))
            return self.view_proj(x.to(self.device, torch.float32))
        if images is None:
            raise ValueError("this scorer encodes images [V, 3, H, W] (FrameScorerConfig.view_dim = 0); "
                             "set view_dim to pass view_embeddings")
        x = _check_tensor("images", images, (None, 3, None, None))
        size = c.image_size
        x = F.interpolate(x.to(self.device, torch.float32), size=(size, size), mode="bilinear",
                          align_corners=False, antialias=True).clamp(0.0, 1.0)
        return self.view_proj(self.image_encoder(x))

    def encode_text(self, text: Tensor) -> Tensor:
        """q^ [E] (unnormalised) from the text embedding [T]."""
        q = _check_tensor("text", text, (self.config.text_dim,))
        return self.text_proj(q.to(self.device, torch.float32))

    @torch.no_grad()
    def set_semantic_head(self, weight: Tensor) -> None:
        """Copy the stage-II semantic head's map [text_dim, latent_dim]
        (``GenSplat.semantic_proj.weight``) into this scorer (frozen, saved with it)."""
        if self.semantic_weight is None:
            raise ValueError("this scorer has no geometric evidence term (FrameScorerConfig.evidence=False)")
        w = _check_tensor("semantic head weight", weight, tuple(self.semantic_weight.shape))
        self.semantic_weight.copy_(w.detach().to(self.semantic_weight.device, torch.float32))

    @torch.no_grad()
    def view_evidence(self, text: Tensor, latents: Tensor, seen: Tensor) -> Tensor:
        """e_i [V]: for each view, the largest cosine between the text embedding ``text`` [T] and
        the CLIP-aligned embeddings of the Gaussians it sees (``seen`` bool [V, N] over the
        scene's ``latents`` [N, C]); -1 for a view that sees none. No gradient (a frozen map)."""
        if self.semantic_weight is None:
            raise ValueError("this scorer has no geometric evidence term (FrameScorerConfig.evidence=False)")
        c = self.config
        q = _check_tensor("text", text, (c.text_dim,)).to(self.device, torch.float32)
        lat = _check_tensor("latents", latents, (None, c.latent_dim)).to(self.device, torch.float32)
        if not isinstance(seen, Tensor) or seen.dtype != torch.bool or seen.ndim != 2 or seen.shape[1] != lat.shape[0]:
            raise ValueError(f"seen must be a bool tensor [V, {lat.shape[0]}], got "
                             f"{getattr(seen, 'dtype', type(seen).__name__)} {list(getattr(seen, 'shape', []))}")
        cos = semantic_cosine(lat, self.semantic_weight, q)
        masked = torch.where(seen.to(self.device), cos[None], torch.full_like(cos[None], -1.0))
        return masked.max(dim=1).values if masked.shape[1] else cos.new_full((seen.shape[0],), -1.0)

    @property
    def scale(self) -> Tensor:
        return self.log_scale.clamp(max=MAX_LOG_SCALE).exp()

    # ------------------------------------------------------------------ forward
    def forward(self, text: Tensor, images: Tensor | None = None, *, view_embeddings: Tensor | None = None,
                latents: Tensor | None = None, positions: Tensor | None = None,
                gaussian_mask: Tensor | None = None, evidence: Tensor | None = None) -> FrameScores:
        """Scores of V views for one text.

        ``text`` [T]; ``images`` [V, 3, H, W] in [0, 1] or ``view_embeddings`` [V, view_dim];
        mode ``"geometry"``: ``latents`` [V, M, C], scene-centred ``positions`` [V, M, 3] and
        ``gaussian_mask`` bool [V, M] (True = real; padded entries are never read), M >= 1;
        mode ``"views"``: the Gaussian inputs may be given and are ignored. ``evidence`` [V]
        (:meth:`view_evidence`) is required when the config has ``evidence`` and ignored otherwise."""
        v = self.encode_views(images, view_embeddings)
        V = v.shape[0]
        if V == 0:
            raise ValueError("no views: images / view_embeddings hold 0 views")
        if self.config.mode == "geometry":
            if latents is None or positions is None or gaussian_mask is None:
                raise ValueError("mode 'geometry' needs latents [V, M, C], positions [V, M, 3] and gaussian_mask "
                                 "[V, M] (use mode 'views' for the 2D-views-only scorer)")
            lat = _check_tensor("latents", latents, (V, None, self.config.latent_dim))
            M = lat.shape[1]
            if M == 0:
                raise ValueError("latents [V, M, C] has M = 0; pad to at least one entry (masked out)")
            pos = _check_tensor("positions", positions, (V, M, 3))
            mask = gaussian_mask.to(self.device) if isinstance(gaussian_mask, Tensor) else None
            if mask is None or mask.dtype != torch.bool or tuple(mask.shape) != (V, M):
                raise ValueError(f"gaussian_mask must be a bool tensor [{V}, {M}], got "
                                 f"{getattr(gaussian_mask, 'dtype', type(gaussian_mask).__name__)} "
                                 f"{list(getattr(gaussian_mask, 'shape', []))}")
            keep = mask[..., None]
            lat = torch.where(keep, lat.to(self.device, torch.float32), 0.0)  # padded values never read
            pos = torch.where(keep, pos.to(self.device, torch.float32), 0.0)
            tokens = self.latent_proj(lat) + self.position(pos.reshape(V * M, 3)).reshape(V, M, -1)
            tokens = self.token_norm(tokens)
            for block in self.blocks:
                v = block(v, tokens, mask)
        fused = v
        view_vec = self.out_proj(self.out_norm(fused))
        cosine = F.cosine_similarity(view_vec, self.encode_text(text)[None], dim=-1)
        logits = self.scale * cosine + self.bias
        if self.evidence_scale is not None:
            if evidence is None:
                raise ValueError("this scorer adds geometric evidence: pass evidence [V] (FrameScorer.view_evidence)")
            e = _check_tensor("evidence", evidence, (V,)).to(self.device, torch.float32)
            logits = logits + self.evidence_scale * standardise(e)
        return FrameScores(logits=logits, cosine=cosine, fused=fused)

    # ------------------------------------------------------------------ folders
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``frames.json`` (format, config) and ``model.safetensors`` (every parameter and
        buffer) into a temporary folder beside ``path``, then move it into place
        (:func:`liftgs.files.atomic_dir`). No pickle."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_dir(path) as tmp:
            state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            save_json_atomic(tmp / CONFIG_NAME, {"format": FORMAT, "config": to_dict(self.config)})
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> FrameScorer:
        """A scorer written by :meth:`save_pretrained` (of this class or a subclass). A missing
        or damaged folder is a one-line ValueError naming the file."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
        for f in (config_file, weights_file):
            if not f.is_file():
                raise ValueError(f"{f}: missing; expected a folder written by FrameScorer.save_pretrained")
        try:
            doc = json.loads(config_file.read_text())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"field 'format' must be {FORMAT!r}")
            if not isinstance(doc.get("config"), dict):
                raise ValueError("field 'config' must be a JSON object")
            config = update_config(FrameScorerConfig(), doc["config"], str(config_file), "config.")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            if isinstance(err, ConfigError):  # already one line naming the file and the field
                raise
            raise ValueError(f"{config_file}: not a valid frame scorer config ({_one_line(err)})") from err
        scorer = cls(config)
        try:
            state = load_file(str(weights_file), device="cpu")
            own = scorer.state_dict()
            missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            if missing or unexpected:
                raise ValueError(f"missing {missing[:4]}, unexpected {unexpected[:4]}")
            for name, value in state.items():
                if own[name].shape != value.shape:
                    raise ValueError(f"{name} has shape {list(value.shape)}, expected {list(own[name].shape)}")
            scorer.load_state_dict(state, strict=True)
        except (ValueError, RuntimeError, OSError, SafetensorError) as err:
            raise ValueError(f"{weights_file}: weights do not match {config_file} ({_one_line(err)})") from err
        return scorer.to(map_location)


def standardise(x: Tensor, eps: float = 1e-6) -> Tensor:
    """(x - mean) / (std + eps) over the last axis (population std); zeros for one entry."""
    if x.shape[-1] < 2:
        return torch.zeros_like(x)
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=False, keepdim=True) + eps)


def semantic_cosine(latents: Tensor, weight: Tensor, text: Tensor) -> Tensor:
    """[N]: cos(W l_j, q) between the CLIP-aligned embeddings W l_j of ``latents`` [N, C] under the
    semantic head ``weight`` W [T, C] and the text embedding ``text`` q [T], without forming the
    [N, T] embeddings: (l_j . W^T q^) / sqrt(l_j^T (W^T W) l_j). A zero embedding gives 0."""
    W = weight.to(latents.dtype)
    along = latents @ (W.T @ F.normalize(text.to(latents.dtype), dim=0))
    norms = ((latents @ (W.T @ W)) * latents).sum(-1).clamp_min(0.0).sqrt()
    return along / norms.clamp_min(1e-12)


def _check_tensor(name: str, x: Any, shape: tuple[int | None, ...]) -> Tensor:
    """``x`` as a finite floating tensor of ``shape`` (None = any size)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(x).__name__}")
    want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    if x.ndim != len(shape) or any(s is not None and x.shape[i] != s for i, s in enumerate(shape)):
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _logits_of(scores: Any) -> Tensor:
    logits = scores.logits if isinstance(scores, FrameScores) else scores
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise ValueError(f"scores must be FrameScores or a floating tensor of logits, got {type(scores).__name__}")
    return logits


def frame_scorer_loss(scores: FrameScores | Tensor, visible: Any, view_mask: Any = None) -> Tensor:
    """L_bce of GAFS: mean binary cross-entropy with logits between the scores and the per-view
    labels (:func:`liftgs.models.gensplat.frames.target_visibility`), over the views where
    ``view_mask`` is True (padded views of a batch left out; default: every view).

    ``scores``: :class:`FrameScores` or logits [V] / [B, V]; ``visible``, ``view_mask``: bool,
    same shape (numpy or torch). A scalar tensor; one-line ValueError when no view counts."""
    logits = _logits_of(scores)
    if logits.ndim not in (1, 2):
        raise ValueError(f"scores must be [V] or [B, V], got shape {list(logits.shape)}")
    target = _bool_tensor("visible", visible, logits)
    mask = torch.ones_like(target) if view_mask is None else _bool_tensor("view_mask", view_mask, logits)
    if not mask.any():
        raise ValueError("view_mask leaves no view to score")
    if not torch.isfinite(logits[mask]).all():
        raise ValueError("scores contain NaN or infinite values")
    loss = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return loss[mask].mean()


def _bool_tensor(name: str, x: Any, like: Tensor) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if t.dtype != torch.bool or tuple(t.shape) != tuple(like.shape):
        raise ValueError(f"{name} must be bool of shape {list(like.shape)} (as the scores), got {t.dtype} "
                         f"{list(t.shape)}")
    return t.to(like.device)


def rank_and_select(scores: FrameScores | Tensor, viewmats: Any, k: int = 32, tau_d: float = 0.5,
                    lambda_t: float = 1.0, lambda_r: float = 1.0) -> np.ndarray:
    """GAFS inference: the scorer's logits [V] ranked and thinned by redundancy suppression,
    :func:`liftgs.models.gensplat.frames.select_views` (N* = 32, τ_d = 0.5, λ_t = λ_r = 1 by
    default). Returns int64 view indices in selection order."""
    logits = _logits_of(scores)
    if logits.ndim != 1:
        raise ValueError(f"scores must be one scene's [V] logits, got shape {list(logits.shape)}")
    return select_views(logits.detach().cpu().double().numpy(), viewmats, k=k, tau_d=tau_d,
                        lambda_t=lambda_t, lambda_r=lambda_r)


# ---------------------------------------------------------------------- visible Gaussians
def visible_gaussians(means: Tensor, viewmat: Any, K: Any, width: int, height: int,
                      max_per_view: int | None = None, generator: torch.Generator | None = None,
                      near: float = NEAR_PLANE) -> Tensor:
    """Indices (int64, ascending) of the Gaussians a camera sees: centre ``means`` [N, 3] in
    front of it (camera z > ``near``) and projecting inside the image, 0 <= u < width and
    0 <= v < height (pixel i spans [i, i + 1), as :func:`liftgs.geometry.project_points`).
    Centres only, no occlusion test: a Gaussian behind a wall counts as seen.

    ``viewmat`` [4, 4] world->camera (OpenCV axes), ``K`` [3, 3]. With ``max_per_view``, more
    visible Gaussians than that are subsampled uniformly without replacement, drawn from
    ``generator`` (required then, so the draw is reproducible; the global RNG is not used)."""
    x = _check_tensor("means", means, (None, 3))
    vm = torch.as_tensor(np.asarray(viewmat, dtype=np.float64) if not isinstance(viewmat, Tensor) else viewmat)
    Km = torch.as_tensor(np.asarray(K, dtype=np.float64) if not isinstance(K, Tensor) else K)
    if tuple(vm.shape) != (4, 4) or not torch.isfinite(vm).all():
        raise ValueError(f"viewmat must be a finite [4, 4] world->camera matrix, got shape {list(vm.shape)}")
    if tuple(Km.shape) != (3, 3) or not torch.isfinite(Km).all():
        raise ValueError(f"K must be a finite [3, 3] intrinsics matrix, got shape {list(Km.shape)}")
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if max_per_view is not None:
        if isinstance(max_per_view, bool) or not isinstance(max_per_view, (int, np.integer)) or max_per_view < 1:
            raise ValueError(f"max_per_view must be an integer >= 1 or None, got {max_per_view!r}")
        if not isinstance(generator, torch.Generator):
            raise ValueError("max_per_view needs a torch.Generator (generator=...) for a reproducible subsample")
    pts = x.detach().to("cpu", torch.float64)
    vm, Km = vm.to(torch.float64), Km.to(torch.float64)
    cam = pts @ vm[:3, :3].T + vm[:3, 3]
    z = cam[:, 2]
    front = z > near
    uvw = cam @ Km.T
    zs = torch.where(front, z, torch.ones_like(z))
    u, v = uvw[:, 0] / zs, uvw[:, 1] / zs
    inside = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    index = torch.nonzero(inside).flatten()
    if max_per_view is not None and index.numel() > max_per_view:
        pick = torch.randperm(index.numel(), generator=generator)[:max_per_view]
        index = index[pick].sort().values
    return index.to(means.device)


def pad_view_sets(indices: Sequence[Tensor], latents: Tensor, means: Tensor,
                  centre: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-view index lists -> the padded sets :class:`FrameScorer` takes: latents [V, M, C],
    positions [V, M, 3] (``means`` minus ``centre``, default the mean of all ``means``: the
    Fourier features expect scene-centred coordinates) and the mask bool [V, M]; M = the
    longest list (at least 1)."""
    lat = _check_tensor("latents", latents, (None, None))
    xyz = _check_tensor("means", means, (lat.shape[0], 3))
    if len(indices) == 0:
        raise ValueError("indices holds no view")
    centre = xyz.mean(dim=0) if centre is None else _check_tensor("centre", centre, (3,))
    M = max(1, max(int(i.numel()) for i in indices))
    V = len(indices)
    out_lat = lat.new_zeros((V, M, lat.shape[1]))
    out_pos = xyz.new_zeros((V, M, 3))
    mask = torch.zeros((V, M), dtype=torch.bool, device=lat.device)
    for r, idx in enumerate(indices):
        idx = torch.as_tensor(idx, dtype=torch.long, device=lat.device)
        if idx.ndim != 1 or (idx.numel() and (idx.min() < 0 or idx.max() >= lat.shape[0])):
            raise ValueError(f"indices[{r}] must be 1-D Gaussian indices in [0, {lat.shape[0]})")
        n = idx.numel()
        out_lat[r, :n] = lat[idx]
        out_pos[r, :n] = xyz[idx] - centre
        mask[r, :n] = True
    return out_lat, out_pos, mask


def gather_view_gaussians(latents: Tensor, means: Tensor, viewmats: Any, K: Any, width: int, height: int,
                          max_per_view: int | None = None, generator: torch.Generator | None = None,
                          centre: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`visible_gaussians` for every view of ``viewmats`` [V, 4, 4] (``K`` [3, 3] shared or
    [V, 3, 3]), padded by :func:`pad_view_sets`: (latents [V, M, C], positions [V, M, 3],
    gaussian_mask [V, M])."""
    vms = np.asarray(viewmats.detach().cpu() if isinstance(viewmats, Tensor) else viewmats, dtype=np.float64)
    Ks = np.asarray(K.detach().cpu() if isinstance(K, Tensor) else K, dtype=np.float64)
    if vms.ndim != 3 or vms.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be [V, 4, 4], got shape {list(vms.shape)}")
    if Ks.shape == (3, 3):
        Ks = np.repeat(Ks[None], vms.shape[0], axis=0)
    if Ks.shape != (vms.shape[0], 3, 3):
        raise ValueError(f"K must be [3, 3] or [{vms.shape[0]}, 3, 3], got shape {list(Ks.shape)}")
    index = [visible_gaussians(means, vms[i], Ks[i], width, height, max_per_view, generator)
             for i in range(vms.shape[0])]
    return pad_view_sets(index, latents, means, centre)


__all__ = ["CONFIG_NAME", "FORMAT", "FrameScorer", "FrameScorerConfig", "FrameScores", "MODES", "WEIGHTS_NAME",
           "frame_scorer_loss", "gather_view_gaussians", "pad_view_sets", "rank_and_select", "visible_gaussians"]
