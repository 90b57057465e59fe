"""Fits on minbasis descriptors (docs/theory/fitting.md): linear ACE potentials, linear models on
polynomial features, and per-species shallow neural networks (Behler–Parrinello form)."""

from .data import Labels, get_labels, read_structures
from .assembly import NormalEquations, RowWeights
from .linear import LinearFitConfig, fit_linear, linear_equations, solve_equations
from .solvers import ARD, BayesianRidge, Ridge, solve_system
from .registry import Model, load_model, register_model
from .metrics import error_metrics
from .mlp import MLPFitConfig, MLPModel, fit_mlp
from .model import LinearModel, MinbasisCalculator, Prediction
from .poly import PolynomialFeatures, PolynomialModel, fit_polynomial
from .fidelity import FidelityData, resolve_fidelity
from .multifidelity import MultiFidelityModel, PIWSLConfig, fit_linear_mf, fit_linear_prior
from .mlp_mf import MLPMultiFidelityConfig, MLPMultiFidelityModel, fit_mlp_mf
from .auto import AutoFitConfig, fit_auto

__all__ = ["Labels", "get_labels", "read_structures", "LinearFitConfig", "fit_linear", "linear_equations", "solve_equations",
           "NormalEquations", "RowWeights", "Ridge", "BayesianRidge", "ARD", "solve_system",
           "error_metrics", "LinearModel", "MinbasisCalculator", "Prediction", "MLPFitConfig", "MLPModel", "fit_mlp",
           "PolynomialFeatures", "PolynomialModel", "fit_polynomial", "load_model", "Model", "register_model",
           "resolve_fidelity", "FidelityData", "MultiFidelityModel", "PIWSLConfig", "fit_linear_mf",
           "fit_linear_prior", "MLPMultiFidelityConfig", "MLPMultiFidelityModel", "fit_mlp_mf",
           "AutoFitConfig", "fit_auto"]
