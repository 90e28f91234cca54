"""Vec2Face (Duong et al., CVPR 2020) without the bijection loss, as in the study.

The generator G maps F's normalised vector v to a face; the loss is WGAN-GP adversarial +
λ_pix·L1(G(v), x) + λ_id·(1 − cos(F(G(v)), v)). The study (Wenger et al. 2022, § IV) built
it on the official Progressive GAN code and dropped the bijection loss (weight 0.01 in Vec2Face).

Defaults: networks and optimiser from the official PGGAN (``config.py``/``train.py``):
Adam lr 1e-3, β (0, 0.99), ε 1e-8 for both networks, one critic step per generator step,
gradient penalty λ 10 (WGAN-GP, Gulrajani et al. 2017), drift ε_drift 1e-3, minibatch-stddev
group 4, batch 16 (PGGAN's mini-batch at 128×128), and the study's 15,000,000 training
images shown. λ_pix = λ_id = 10 are this implementation's choice: neither the study nor
Vec2Face's paper gives values usable here.

Departures, stated: progressive growing is replaced by training at the final resolution
(128×128, resized to 112×112) with the grown networks' layers (``networks/vec2face.py``);
PGGAN's generator moving average is not kept.

Identity network and the black-box rule (``feature_networks``): the study gives the attacker
black-box access to F, so the identity loss must not back-propagate through F. By default
(``identity_network="student"``, for every F) it uses a student trained to mimic F, as
DiBiGAN/Vec2Face do for a black-box F: insightface's iresnet18 (stages [2, 2, 2, 2]) with a
D-dimensional head, trained by ``train_student`` with Adam (lr 1e-3) on
1 − cos(student(x), F(x)) over the reconstructor's training faces — F's vectors of them,
which the attacker obtains by querying F (a choice; the original's student is not
published). The loss is then 1 − cos(student(G(v)), v). ``identity_network`` may instead
name another differentiable recognizer H: the loss becomes 1 − cos(H(G(v)), H(x)), H's
features of the reconstruction against those of the real face (v lives in F's space, not
H's). Naming F itself (its own differentiable graph, 1 − cos(F(G(v)), v)) is white-box and is
refused unless ``allow_white_box``; a non-differentiable F (``dlib-resnet``) can only be
reached through its student. The student and the choice of identity network live in
``vec2face_identity`` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.methods.feature_networks import STUDENT, FeatureNetwork
from reconstruction.methods.networks.vec2face import Vec2FaceCritic, Vec2FaceGenerator
from reconstruction.methods.vec2face_identity import (
    StudentConfig,
    StudentEmbedder,
    identity_network,
    resolve_identity,
    train_student,
)
from reconstruction.training import (
    DeviceLike,
    TrainResult,
    batch_indices,
    config_dict,
    config_from_dict,
    generate_images,
    load_model_file,
    prepare_images,
    prepare_vectors,
    resolve_device,
    run_training,
    save_model_file,
)

__all__ = [
    "StudentConfig",
    "StudentEmbedder",
    "Vec2FaceConfig",
    "build",
    "gradient_penalty",
    "identity_network",
    "load_model",
    "reconstruct",
    "resolve_identity",
    "save_model",
    "train",
    "train_student",
]

METHOD = "vec2face"


@dataclass(frozen=True)
class Vec2FaceConfig:
    """Generator, critic and training; defaults are PGGAN's / the study's (see module doc)."""

    resolution: int = 128
    output_size: int = 112
    fmap_base: int = 8192
    fmap_max: int = 512
    mbstd_group_size: int = 4
    batch_size: int = 16
    total_images: int = 15_000_000
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    adam_eps: float = 1e-8
    gp_lambda: float = 10.0
    drift: float = 1e-3
    lambda_pix: float = 10.0
    lambda_id: float = 10.0
    identity_network: str = STUDENT  # "student" (of F), or a recognizer other than F
    allow_white_box: bool = False  # permit F itself as the identity network

    @classmethod
    def tiny(cls) -> Vec2FaceConfig:
        """8×8 networks with 8 channels and four steps: a CPU test in about a second."""
        return cls(
            resolution=8,
            output_size=8,
            fmap_base=32,
            fmap_max=8,
            batch_size=4,
            total_images=16,
        )

    @classmethod
    def cpu(cls) -> Vec2FaceConfig:
        """Reduced scale for a CPU run on LFW: 64×64 networks of ≤ 64 channels (output
        stored resized to 112), 20,000 images shown; a few seconds per step on 2 cores."""
        return cls(
            resolution=64,
            output_size=64,
            fmap_base=512,
            fmap_max=64,
            total_images=20_000,
        )

    def __post_init__(self) -> None:
        if not self.identity_network:
            raise ValueError("identity_network must be 'student' or a recognizer name")


def build(config: Vec2FaceConfig, vector_dim: int) -> tuple[Vec2FaceGenerator, Vec2FaceCritic]:
    """Untrained generator and critic."""
    generator = Vec2FaceGenerator(
        vector_dim,
        resolution=config.resolution,
        output_size=config.output_size,
        fmap_base=config.fmap_base,
        fmap_max=config.fmap_max,
    )
    critic = Vec2FaceCritic(
        resolution=config.resolution,
        fmap_base=config.fmap_base,
        fmap_max=config.fmap_max,
        mbstd_group_size=config.mbstd_group_size,
    )
    return generator, critic


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP: mean (‖∇ D(x̂)‖₂ − 1)² at random interpolates x̂ of real and fake."""
    alpha = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, 3, H, W)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@dataclass
class _Gan:
    """What one WGAN-GP step works on: the two networks, their optimisers and the frozen
    identity network (``in_f_space``: its vectors compare with F's)."""

    generator: nn.Module
    critic: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    identity: nn.Module
    in_f_space: bool


def _critic_step(
    gan: _Gan, config: Vec2FaceConfig, v: Tensor, real: Tensor
) -> tuple[Tensor, Tensor]:
    """One critic update (Wasserstein loss, gradient penalty, drift); returns (loss, penalty)."""
    with torch.no_grad():
        fake = gan.generator(v)  # (B, 3, 112, 112)
    d_real, d_fake = gan.critic(real), gan.critic(fake)  # (B,)
    gp = gradient_penalty(gan.critic, real, fake)
    loss_d = (
        d_fake.mean() - d_real.mean() + config.gp_lambda * gp + config.drift * d_real.pow(2).mean()
    )
    gan.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    gan.opt_d.step()
    return loss_d, gp


def _generator_step(
    gan: _Gan, config: Vec2FaceConfig, v: Tensor, real: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One generator update (adversarial + pixel + identity loss) with the critic frozen;
    returns (adversarial, pixel, identity) losses."""
    for p in gan.critic.parameters():
        p.requires_grad_(False)
    fake = gan.generator(v)
    adv = -gan.critic(fake).mean()
    pix = F.l1_loss(fake, real)
    if gan.in_f_space:  # F or its student: compare with F's vector v
        reference = v
    else:  # another recognizer H: compare with H's features of the real face
        with torch.no_grad():
            reference = gan.identity(real)  # (B, D_H)
    ident = (1 - F.cosine_similarity(gan.identity(fake), reference, dim=1)).mean()
    loss_g = adv + config.lambda_pix * pix + config.lambda_id * ident
    gan.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    gan.opt_g.step()
    for p in gan.critic.parameters():
        p.requires_grad_(True)
    return adv, pix, ident


def _gan_build(
    config: Vec2FaceConfig, dim: int, identity: FeatureNetwork, device: torch.device
) -> _Gan:
    """Untrained G and critic on ``device``, their Adam optimisers, the frozen identity net."""
    generator, critic = build(config, dim)
    generator, critic = generator.to(device), critic.to(device)
    frozen = identity.module.to(device).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    adam = {"lr": config.lr, "betas": config.betas, "eps": config.adam_eps}
    return _Gan(
        generator=generator,
        critic=critic,
        opt_g=torch.optim.Adam(generator.parameters(), **adam),
        opt_d=torch.optim.Adam(critic.parameters(), **adam),
        identity=frozen,
        in_f_space=identity.in_f_space,
    )


def _identity_network(identity: FeatureNetwork | nn.Module) -> FeatureNetwork:
    """``identity`` as a FeatureNetwork (a bare module is recorded as ``custom``)."""
    if isinstance(identity, FeatureNetwork):
        return identity
    return FeatureNetwork(
        identity, f"custom:{type(identity).__name__}", white_box=False, in_f_space=True
    )


def train(
    config: Vec2FaceConfig,
    vectors: Tensor,
    images: Tensor,
    *,
    identity: FeatureNetwork | nn.Module,
    seed: int,
    device: DeviceLike = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    max_steps: int | None = None,
) -> TrainResult:
    """Train G (and the critic) on (N, D) vectors and (N, 3, H, W) images in [-1, 1].

    ``identity``: the identity loss's frozen network, as ``identity_network(...)`` builds it
    (a student of F by default), or a bare module taking [-1, 1] images to unit vectors in
    F's space (compared with v; recorded as ``custom``).
    """
    identity = _identity_network(identity)
    provenance = {
        "feature_network": identity.source,
        "white_box": identity.white_box,
        "allow_white_box": config.allow_white_box,
    }
    device = resolve_device(device)
    vectors = prepare_vectors(vectors)
    images = prepare_images(images, config.output_size)
    if len(vectors) != len(images):
        raise ValueError(f"{len(vectors)} vectors but {len(images)} images")
    n, dim = vectors.shape
    torch.manual_seed(seed)
    gan = _gan_build(config, dim, identity, device)
    batch = min(config.batch_size, n)
    total = max(1, config.total_images // batch)

    def step_fn(step: int) -> dict[str, float]:
        idx = batch_indices(n, batch, seed, step)
        v = vectors[idx].to(device)  # (B, D)
        real = images[idx].to(device)  # (B, 3, 112, 112)
        loss_d, gp = _critic_step(gan, config, v, real)
        adv, pix, ident = _generator_step(gan, config, v, real)
        return {
            "d": loss_d.item(),
            "gp": gp.item(),
            "adv": adv.item(),
            "l1": pix.item(),
            "id": ident.item(),
        }

    meta = {"method": METHOD, "config": config_dict(config), "seed": seed, "data": [n, dim]}
    run = run_training(
        modules={"generator": gan.generator, "critic": gan.critic},
        optimizers={"generator": gan.opt_g, "critic": gan.opt_d},
        schedulers={},
        step_fn=step_fn,
        total_steps=total,
        seed=seed,
        run_meta=meta,
        checkpoint_dir=checkpoint_dir,
        max_steps=max_steps,
        progress=progress,
        description=METHOD,
    )
    return TrainResult.of(
        run,
        model=gan.generator,
        method=METHOD,
        config=config,
        seed=seed,
        device=device,
        total_steps=total,
        extras={"critic": gan.critic},
        provenance=provenance,
    )


def reconstruct(model: nn.Module, vectors: Tensor, *, batch_size: int = 64) -> Tensor:
    """(N, D) vectors -> (N, 3, 112, 112) images in [-1, 1] (clamped; CPU tensor)."""
    return generate_images(model, vectors, batch_size=batch_size)


def save_model(path: str | Path, result: TrainResult) -> Path:
    """Save a trained generator with its config (see ``load_model``)."""
    return save_model_file(
        path,
        method=METHOD,
        config=result.config,
        vector_dim=result.model.dense.weight.shape[1],
        model=result.model,
        seed=result.seed,
        steps=result.steps,
        **result.provenance,
    )


def load_model(path: str | Path, device: DeviceLike = "cpu") -> Vec2FaceGenerator:
    """A trained generator from ``save_model``'s file, in eval mode on ``device``."""
    payload = load_model_file(path, METHOD)
    config = replace(Vec2FaceConfig(), **config_from_dict(payload["config"]))
    generator, _ = build(config, payload["vector_dim"])
    generator.load_state_dict(payload["state_dict"])
    return generator.to(resolve_device(device)).eval()
