"""Fits on minbasis descriptors (docs/theory/fitting.md): linear ACE potentials, linear models on
polynomial features, and per-species shallow neural networks (Behler–Parrinello form)."""

from .data import Labels, get_labels, read_structures
from .linear import LinearFitConfig, build_design, fit_linear, solve
from .loader import load_model
from .metrics import error_metrics
from .mlp import MLPFitConfig, MLPModel, fit_mlp
from .model import LinearModel, MinbasisCalculator, Prediction
from .poly import PolynomialFeatures, PolynomialModel, fit_polynomial
from .fidelity import FidelityData
from .multifidelity import MultiFidelityModel, PIWSLConfig, fit_linear_mf, fit_linear_prior
from .mlp_mf import MLPMultiFidelityConfig, MLPMultiFidelityModel, fit_mlp_mf

__all__ = ["Labels", "get_labels", "read_structures", "LinearFitConfig", "build_design", "fit_linear", "solve",
           "error_metrics", "LinearModel", "MinbasisCalculator", "Prediction", "MLPFitConfig", "MLPModel", "fit_mlp",
           "PolynomialFeatures", "PolynomialModel", "fit_polynomial", "load_model", "FidelityData", "MultiFidelityModel", "PIWSLConfig", "fit_linear_mf",
           "fit_linear_prior", "MLPMultiFidelityConfig", "MLPMultiFidelityModel", "fit_mlp_mf"]
