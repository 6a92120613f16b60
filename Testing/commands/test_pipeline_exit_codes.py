"""Errors of the pipeline commands become one line on stderr and a stable exit code."""

from __future__ import annotations

import pytest
import torch

from nnmamba.commands._pipeline import ExitCode, report_errors
from nnmamba.errors import BackendUnavailableError, Cancelled, InputError, ModelError, OutputExistsError


@pytest.mark.parametrize("error,code,word", [
    (InputError("bad volume"), ExitCode.BAD_INPUT, "bad_input"),
    (ModelError("bad card"), ExitCode.BAD_MODEL, "bad_model"),
    (OutputExistsError("exists"), ExitCode.OUTPUT_EXISTS, "output_exists"),
    (BackendUnavailableError("no cuda"), ExitCode.BACKEND_UNAVAILABLE, "backend_unavailable"),
    (Cancelled("stop"), ExitCode.CANCELLED, "cancelled"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), ExitCode.OUT_OF_MEMORY, "out_of_memory"),
])
def test_each_error_kind_has_its_exit_code_and_a_one_line_message(error, code, word, capsys):
    def run(args):
        raise error

    assert report_errors(run)(None) == code
    err = capsys.readouterr().err
    assert f"error ({word})" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_programming_errors_are_not_hidden():
    def run(args):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        report_errors(run)(None)
