"""State-space-model parts: the Mamba block and the selective-scan backends it runs on."""

from nnmamba.ssm.backend_choice import resolve_backend
from nnmamba.ssm.backends import available_backends, backend_names, get_backend, register_backend
from nnmamba.ssm.mamba import Mamba

__all__ = ["Mamba", "available_backends", "backend_names", "get_backend", "register_backend",
           "resolve_backend"]
