"""Dec, the decoder of the Eigenfaces attack: a linear map 1024 → 3×112×112, output
standardised per sample, and the mean face it is added to.

Source: Razzhigaev, Kireev, Udovichenko, Petiushko, "Darker than black-box: face
reconstruction from similarity queries" (arXiv:2106.14290) and its code
(github.com/papermsucode/fullbboxrestoration, ``train_eigenfaces.ipynb``): a bias-free linear
autoencoder (encoder 3·112² → 1024 with its code standardised, decoder 1024 → 3·112² with its
output standardised), AdamW lr 1e-3, weight decay 0.1, batch 2048, 100 epochs, grey input,
half-mirrored ("soft symmetric") RGB target. No weights are downloaded: Dec is fitted here on
the aligned faces of a training split whose identities are disjoint from the targets.

Image space (documented once, used by the attack): an aligned RGB crop ``u`` (uint8) is
``x = u / 127.5 − 1`` in [−1, 1], shape (3, 112, 112); the attack's image is
``clamp(mean_face + delta, −1, 1)`` with ``delta`` clamped to [−1, 1].

Departures from the original, and why:
- Faces are centred on the split's mean face before fitting (the attack adds that mean back),
  so Dec spans deviations from the mean face. The original fitted uncentred faces and added a
  loss term ``10 · MSE(Dec(noise), x)`` pulling random decodes towards the face itself; with
  centred targets that term is a constant, so it is left out.
- ``pca`` (the fallback, and the CPU default in the benchmark) takes the top principal
  components, direction i scaled by σ_i ** ``sigma_power`` with σ_i = s_i / √(n − 1) its
  standard deviation. Power 1 makes Dec(z), z ~ N(0, I), a Gaussian model of a face's
  deviation from the mean; the default 0.5 flattens that spectrum, so the search also moves
  along the finer directions. Measured with the attack (F = mobileface, 4 LFW targets,
  300 iterations × 64, the same seeds; soft-symmetric target): mean final cosine 0.858 at
  power 1, 0.907 at 0.5, 0.870 at 0.25; without the symmetric target 0.819 / 0.886 / 0.873
  (and 0.859 at power 0). The autoencoder starts from the power-1 PCA solution (decoder) and
  a ridge fit of the encoder instead of a random start, so it converges in a few epochs on
  CPU; from there the original's lr 1e-3 first undoes the start, so the default lr is 1e-4.
  ``meta["losses"][0]`` is the loss at the start.
- Fewer images than components: PCA yields at most n − 1 directions. The remaining columns of
  Dec are random unit directions orthogonal to the fitted ones, scaled like the last fitted
  one (σ ** sigma_power), so z keeps its 1024 dimensions and no direction is dead;
  ``data_components`` records how many columns came from the data.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FORMAT",
    "EigenBasis",
    "EigenBasisConfig",
    "fit_eigenbasis",
    "from_unit",
    "standardize",
    "to_unit",
]

FORMAT = "fvr-eigenbasis/1"
IMAGE_SIZE = 112
BASIS_METHODS = ("autoencoder", "pca")


def to_unit(images: np.ndarray) -> Tensor:
    """uint8 RGB (N, H, W, 3) → float32 (N, 3, H, W) in [−1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def from_unit(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [−1, 1] → uint8 RGB (N, H, W, 3), rounded."""
    pixels = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def standardize(x: Tensor) -> Tensor:
    """Each row to mean 0 and standard deviation 1 (the original's ``Normalize``)."""
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, keepdim=True)
    return (x - mean) / (std + 1e-6)


@dataclass(frozen=True)
class EigenBasisConfig:
    """How Dec is fitted; defaults are the original's settings (autoencoder, 1024 codes)."""

    method: str = "autoencoder"  # or "pca"
    components: int = 1024
    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-4  # the original's 1e-3 from a random start; 1e-4 from the PCA start
    weight_decay: float = 0.1
    grey_input: bool = True  # the encoder sees the grey image, as in the original
    soft_symmetric_target: bool = True  # target = ½ x + ½ mirror(x), as in the original
    # PCA only: Dec's row i is the i-th principal direction times σ_i ** sigma_power
    # (1: a Gaussian model of faces; 0: every direction alike). See the module's notes.
    sigma_power: float = 0.5

    @classmethod
    def tiny(cls, method: str = "autoencoder") -> EigenBasisConfig:
        """A few components and epochs: seconds on CPU, for tests."""
        return cls(method=method, components=16, epochs=6, batch_size=8)

    def __post_init__(self) -> None:
        if self.method not in BASIS_METHODS:
            raise ValueError(f"unknown eigenbasis method {self.method!r}; use {BASIS_METHODS}")
        if self.components < 1:
            raise ValueError("components must be at least 1")
        if not 0 <= self.sigma_power <= 1:
            raise ValueError("sigma_power must lie in [0, 1]")


@dataclass
class EigenBasis:
    """Dec and the mean face, on one device."""

    decoder: Tensor  # (K, P) float32, P = 3·S·S: Dec(z) = standardize(z @ decoder)
    mean_face: Tensor  # (3, S, S) in [−1, 1]
    data_components: int
    meta: dict[str, Any]

    @property
    def components(self) -> int:
        return self.decoder.shape[0]

    @property
    def image_size(self) -> int:
        return self.mean_face.shape[-1]

    def decode(self, z: Tensor) -> Tensor:
        """(B, K) codes → (B, 3, S, S) per-sample standardised images."""
        flat = standardize(z @ self.decoder)  # (B, P)
        return flat.view(-1, *self.mean_face.shape)

    def to(self, device: str | torch.device) -> EigenBasis:
        return EigenBasis(
            self.decoder.to(device), self.mean_face.to(device), self.data_components, self.meta
        )

    def to_bytes(self) -> bytes:
        """The file stored as the artifact (torch.save of plain tensors and a dict)."""
        buffer = io.BytesIO()
        torch.save(
            {
                "format": FORMAT,
                "decoder": self.decoder.cpu().contiguous(),
                "mean_face": self.mean_face.cpu().contiguous(),
                "data_components": self.data_components,
                "meta": self.meta,
            },
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str | torch.device = "cpu") -> EigenBasis:
        state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        if state.get("format") != FORMAT:
            raise ValueError(f"not an eigenbasis file (format {state.get('format')!r})")
        meta = dict(state["meta"])
        meta["sha256"] = hashlib.sha256(data).hexdigest()
        return cls(state["decoder"], state["mean_face"], int(state["data_components"]), meta)

    @classmethod
    def load(cls, path: Path | str, *, device: str | torch.device = "cpu") -> EigenBasis:
        return cls.from_bytes(Path(path).read_bytes(), device=device)


def _pca(
    centred: Tensor, components: int, generator: torch.Generator, power: float = 1.0
) -> tuple[Tensor, int]:
    """(n, P) centred rows → decoder (K, P) of principal directions scaled by σ ** power,
    padded."""
    n, pixels = centred.shape
    rank = min(components, n - 1, pixels)
    if rank < 1:
        raise ValueError("PCA needs at least two images")
    if n < pixels:
        # Through the (n, n) Gram matrix (float64 for the eigensolver): n²·P work instead of
        # the thin SVD's ~4·n²·P; identical directions up to sign.
        gram = (centred @ centred.T).double()  # (n, n)
        values, vectors = torch.linalg.eigh(gram)  # ascending
        values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
        s = values.sqrt().float()  # singular values of the centred matrix
        keep = min(len(s), components)
        vh = (vectors[:, :keep].float().T @ centred) / s[:keep, None].clamp_min(1e-12)
    else:
        # Thin SVD of the (n, P) matrix: V's rows are the principal directions.
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # s (min(n,P),), vh (.., P)
    sigma = s[:rank] / (n - 1) ** 0.5  # standard deviation along each direction
    rank = max(1, int((sigma > sigma[0] * 1e-4).sum()))  # drop numerically null directions
    scale = sigma[:rank] ** power
    decoder = vh[:rank] * scale[:, None]  # (rank, P)
    if rank < components:
        extra = torch.randn(components - rank, pixels, generator=generator)
        basis = vh[:rank]
        extra -= (extra @ basis.T) @ basis  # orthogonal to the fitted span
        extra, _ = torch.linalg.qr(extra.T)  # (P, K − rank) orthonormal columns
        decoder = torch.cat([decoder, extra.T * scale[-1]])
    return decoder.contiguous(), rank


def fit_eigenbasis(
    images: np.ndarray,
    *,
    config: EigenBasisConfig,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
) -> EigenBasis:
    """Fit Dec and the mean face on aligned uint8 RGB faces (N, S, S, 3) of a training split."""
    from tqdm import tqdm

    if len(images) < 2:
        raise ValueError("fitting an eigenbasis needs at least two aligned faces")
    generator = torch.Generator().manual_seed(seed)
    x = to_unit(images)  # (N, 3, S, S)
    shape = x.shape[1:]
    mean_face = x.mean(0)  # (3, S, S)
    target = x
    if config.soft_symmetric_target:
        target = 0.5 * x + 0.5 * torch.flip(x, dims=[3])
    centred = (target - mean_face).flatten(1)  # (N, P)
    power = config.sigma_power if config.method == "pca" else 1.0  # the autoencoder's start
    decoder, rank = _pca(centred, config.components, generator, power)
    losses: list[float] = []
    if config.method == "autoencoder":
        decoder, losses = _fit_autoencoder(
            x, centred, mean_face, decoder, config, generator, device, progress, tqdm
        )
        rank = min(config.components, len(images) - 1)
    meta = {
        "config": asdict(config),
        "seed": seed,
        "n_images": len(images),
        "image_size": shape[-1],
        "space": "x = uint8 / 127.5 - 1; image = clamp(mean_face + delta, -1, 1)",
        "losses": losses,
    }
    return EigenBasis(decoder.cpu(), mean_face.cpu(), rank, meta)


def _fit_autoencoder(
    x: Tensor,
    centred: Tensor,
    mean_face: Tensor,
    decoder: Tensor,
    config: EigenBasisConfig,
    generator: torch.Generator,
    device: str,
    progress: bool,
    tqdm: Any,
) -> tuple[Tensor, list[float]]:
    """The original's linear autoencoder, started from the PCA solution."""
    inputs = x - mean_face
    if config.grey_input:
        inputs = inputs.mean(1, keepdim=True).expand_as(inputs)
    inputs = inputs.flatten(1)  # (N, P)
    targets = standardize(centred)  # Dec's output is standardised, so is its target
    dec = torch.nn.Parameter(decoder.clone().to(device))  # (K, P)
    # Encoder start: ridge regression from the (grey) inputs to the PCA codes of the targets,
    # solved through the (N, N) Gram matrix.
    codes = torch.linalg.solve(decoder @ decoder.T, decoder @ centred.T).T  # (N, K)
    gram = inputs @ inputs.T  # (N, N)
    ridge = 1e-3 * gram.diagonal().mean() * torch.eye(len(gram))
    enc = torch.nn.Parameter((inputs.T @ torch.linalg.solve(gram + ridge, codes)).to(device))
    optimizer = torch.optim.AdamW([enc, dec], lr=config.lr, weight_decay=config.weight_decay)
    with torch.no_grad():  # losses[0]: the PCA start, before any step
        start = standardize(standardize(inputs.to(device) @ enc) @ dec)
        losses = [torch.nn.functional.mse_loss(start, targets.to(device)).item()]
    steps = range(config.epochs)
    bar = tqdm(steps, desc="autoencoder", unit="epoch", disable=not progress)
    for _ in bar:
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            batch = inputs[index].to(device)  # (B, P)
            code = standardize(batch @ enc)  # (B, K)
            out = standardize(code @ dec)  # (B, P)
            loss = torch.nn.functional.mse_loss(out, targets[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        losses.append(total / len(inputs))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return dec.detach().cpu(), losses
