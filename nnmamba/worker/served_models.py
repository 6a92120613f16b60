"""Which models a submit may name: the worker's own (by name), never a path on its disk.

A worker shared over the network must not let a client name files: with paths, a client could
probe which files exist on the server ("not valid JSON" for /etc/passwd, "does not exist" for
others) and make the worker load any safetensors file a planted card points at. So a submit's
models are looked up by exact name among the cards the worker serves, and the job gets those
cards, not the client's strings. Every refusal reads the same whatever the string names.

The worker the Slicer module starts for its own user (`LocalWorker`) passes
`--allow-model-paths`: there the client may name a card file it chose in the panel.

Example:
    >>> resolve_served_models({"segmentation": "/etc/passwd"}, allow_paths=False,   # doctest: +SKIP
    ...                       lister=list_models)
    Traceback (most recent call last):
    ...
    ProtocolError: model '/etc/passwd' is not served by this worker; ...
"""

from __future__ import annotations

from typing import Callable, Optional

from nnmamba.worker.protocol import ErrorCode, ProtocolError


def resolve_served_models(models: dict, allow_paths: bool, lister: Optional[Callable[[], list]] = None,
                          job_id: Optional[str] = None) -> dict:
    """task -> `ModelCard` of a served model for each of a submit's `models` (task -> name).

    With `allow_paths` the names or paths are passed on as they are (the engine finds them).
    Raises `ProtocolError(BAD_MODEL)` for a name the worker does not serve."""
    if allow_paths or not models:
        return dict(models)
    if lister is None:
        from nnmamba.model_card import list_models as lister
    from nnmamba.errors import NNMambaError

    try:
        served = {card.name: card for card in lister()}
    except NNMambaError as e:   # a broken card among the served ones: say so, as for a job
        raise ProtocolError(ErrorCode.from_code(e.code), str(e), job_id=job_id) from e
    resolved = {}
    for task, name in models.items():
        card = served.get(name)
        if card is None:
            known = ", ".join(sorted(served)) or "none"
            raise ProtocolError(ErrorCode.BAD_MODEL,
                                f"model {name[:200]!r} is not served by this worker; name one of its models "
                                f"({known}). A shared worker runs only the models it serves: it never "
                                f"reads a path a client names", job_id=job_id)
        resolved[task] = card
    return resolved
