"""Train a small per-species neural network on ethanol energies and forces with PyTorch.

The descriptors come from :func:`minbasis.torch` (differentiable ACE invariants; forces are
autograd gradients of the energy, and the force loss is differentiated through the Numba
Jacobian–vector product — no ∂B/∂r array is ever stored). Data: the ethanol frames bundled
with minbasis (MP2/cc-pVDZ energies and forces, ``energy_high``/``forces_high``), or any
extxyz file given with ``--data``.

    python examples/torch_ethanol_training.py --epochs 200
    python examples/torch_ethanol_training.py --data ../shared/data/ethanol_mf.extxyz --n-train 400

Prints train/test energy MAE (meV/atom) and force MAE (meV/Å) every few epochs.
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import files

import ase.io
import numpy as np
import torch

import minbasis as mb
import minbasis.torch as mbt


class PerSpeciesMLP(torch.nn.Module):
    """E_i = MLP_{s_i}((B_i − μ_{s_i}) / σ_{s_i}), one two-layer network per centre species (Behler–Parrinello form)."""

    def __init__(self, n_species: int, mean: torch.Tensor, std: torch.Tensor, hidden: int = 32, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        F = mean.shape[1]
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.W1 = torch.nn.Parameter(torch.randn(n_species, F, hidden, generator=g, dtype=torch.float64) / F ** 0.5)
        self.b1 = torch.nn.Parameter(torch.zeros(n_species, hidden, dtype=torch.float64))
        self.W2 = torch.nn.Parameter(torch.randn(n_species, hidden, generator=g, dtype=torch.float64) / hidden ** 0.5)
        self.e0 = torch.nn.Parameter(torch.zeros(n_species, dtype=torch.float64))

    def forward(self, B: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        x = (B - self.mean[species]) / self.std[species]
        h = torch.nn.functional.silu(torch.einsum("nf,nfh->nh", x, self.W1[species]) + self.b1[species])
        return (h * self.W2[species]).sum(1) + self.e0[species]


def energies_forces(model, s: mbt.Structures):
    """Per-structure energies (M,) in eV and forces (N, 3) in eV/Å, the graph kept for training."""
    pos = s.positions.clone().requires_grad_(True)
    B = s.describe(positions=pos, second_order=False)  # exact for parameter gradients of force losses
    E = torch.zeros(s.n_structures, dtype=B.dtype).index_add(0, s.structure, model(B, s.species))
    (dE,) = torch.autograd.grad(E.sum(), pos, create_graph=True)
    return E, -dE


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(files("minbasis") / "data" / "ethanol_mf_subset.extxyz"))
    p.add_argument("--energy-key", default="energy_high")
    p.add_argument("--forces-key", default="forces_high")
    p.add_argument("--n-train", type=int, default=180)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--batch", type=int, default=30, help="structures per optimiser step")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--forces-weight", type=float, default=10.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    frames = ase.io.read(args.data, index=":")
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(frames))
    train = [frames[i] for i in idx[:args.n_train]]
    test = [frames[i] for i in idx[args.n_train:args.n_train + args.n_test]]
    basis = mb.Basis.ace(["H", "C", "O"], 4.5, [6, 3, 2], [0, 3, 2], 3).minimal()
    print(f"basis: {basis.n_features} minimal invariants; train {len(train)}, test {len(test)} structures")

    def labels(fr):
        E = torch.tensor([a.info[args.energy_key] for a in fr], dtype=torch.float64)
        F = torch.from_numpy(np.concatenate([a.arrays[args.forces_key] for a in fr]))
        return E, F

    batches = [train[k:k + args.batch] for k in range(0, len(train), args.batch)]
    S_train = [mbt.Structures(b, basis) for b in batches]
    L_train = [labels(b) for b in batches]
    S_test, L_test = mbt.Structures(test, basis), labels(test)

    X = mb.describe(train, basis)
    ch = torch.cat([s.species for s in S_train])
    mean = torch.zeros(3, basis.n_features, dtype=torch.float64)
    std = torch.ones(3, basis.n_features, dtype=torch.float64)
    for c in range(3):
        rows = torch.from_numpy(X)[ch == c]
        mean[c] = rows.mean(0)
        std[c] = rows.std(0).clamp_min(1e-8)
    model = PerSpeciesMLP(3, mean, std, hidden=args.hidden, seed=args.seed)
    with torch.no_grad():  # start from per-atom mean energies
        e_mean = torch.cat([l[0] for l in L_train]).mean() / len(train[0])
        model.e0.fill_(float(e_mean))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n_atoms = len(train[0])

    def evaluate(S, L):
        E, F = energies_forces(model, S)
        E, F = E.detach(), F.detach()
        n = torch.bincount(S.structure).to(E.dtype)
        return float(((E - L[0]).abs() / n).mean()) * 1e3, float((F - L[1]).abs().mean()) * 1e3

    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        for S, (E_ref, F_ref) in zip(S_train, L_train):
            opt.zero_grad()
            E, F = energies_forces(model, S)
            loss = (((E - E_ref) / n_atoms) ** 2).mean() + args.forces_weight * ((F - F_ref) ** 2).mean()
            loss.backward(inputs=list(model.parameters()))
            opt.step()
        if epoch == 1 or epoch % max(1, args.epochs // 5) == 0 or epoch == args.epochs:
            tr = np.mean([evaluate(S, L) for S, L in zip(S_train, L_train)], axis=0)
            te = evaluate(S_test, L_test)
            print(f"epoch {epoch:4d}  train E {tr[0]:7.2f} meV/atom  F {tr[1]:7.1f} meV/Å   "
                  f"test E {te[0]:7.2f} meV/atom  F {te[1]:7.1f} meV/Å   ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return {"test_energy_mae_mev_per_atom": te[0], "test_forces_mae_mev_per_A": te[1]}


if __name__ == "__main__":
    main()
