"""Errors the user can act on, with a stable code each (the worker sends the code across).

torch-free. Messages say what failed, what was expected, what was got and how to fix it.
"""

from __future__ import annotations


class NNMambaError(Exception):
    """Base of the errors we raise on purpose; `code` is stable across versions."""

    code = "error"


class InputError(NNMambaError, ValueError):
    """The input volume or arguments are unusable (missing file, 2-D image, NaNs, bad spacing...)."""

    code = "bad_input"


class ModelError(NNMambaError, RuntimeError):
    """A model card or its weights are missing, corrupt or do not match each other."""

    code = "bad_model"


class OutputExistsError(NNMambaError, FileExistsError):
    """An output file exists and overwriting was not asked for."""

    code = "output_exists"


class Cancelled(NNMambaError):
    """The job was cancelled by the user."""

    code = "cancelled"


class BackendUnavailableError(NNMambaError, RuntimeError):
    """A scan backend or device asked for by name is not usable here."""

    code = "backend_unavailable"


class PlanError(BackendUnavailableError):
    """An execution plan cannot run here (a forward-only scan for training, a fused form whose
    package is missing, an override that contradicts the mode or device); the message names the fix.
    Keeps the code of `BackendUnavailableError`, so the worker protocol needs no new code."""
