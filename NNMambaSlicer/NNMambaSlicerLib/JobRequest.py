"""What a job asks for, checked before any voxel is copied: known tasks, and input volumes whose
channels match the models' cards (where this computer can read them)."""

from __future__ import annotations

from typing import Optional

from nnmamba.errors import NNMambaError
from nnmamba.results import Task

TASKS = tuple(t.value for t in Task)


class JobRequest:
    """Example:
        >>> JobRequest.normalizeTasks("landmarks")
        ['landmarks']
        >>> JobRequest.channelProblem([rgbVolumeNode], ["classification"])
        "model 'scan-type-cls' needs 1 input channel(s) (image) but 'photo' has 3 components ..."
    """

    @staticmethod
    def normalizeTasks(tasks) -> list:
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        unknown = [t for t in tasks if str(getattr(t, "value", t)) not in TASKS]
        if not tasks or unknown:
            raise ValueError(f"tasks must be a non-empty list of {list(TASKS)}, got {tasks}")
        return list(dict.fromkeys(str(getattr(t, "value", t)) for t in tasks))

    @staticmethod
    def channelsOf(volumeNode) -> int:
        """Input channels a volume node gives: its voxel components (an RGB vector volume gives 3)."""
        image = volumeNode.GetImageData() if volumeNode is not None else None
        return image.GetNumberOfScalarComponents() if image is not None else 1

    @staticmethod
    def channelProblem(volumeNodes, tasks, models: Optional[dict] = None) -> str:
        """Why these volumes cannot feed the tasks' models ("" when they can), where a model's card
        is readable here: the channels (components summed over the volumes) must match the card's.
        The panel uses it to keep, for example, RGB vector volumes away from one-channel models."""
        from nnmamba import model_card

        volumeNodes = list(volumeNodes) if isinstance(volumeNodes, (list, tuple)) else [volumeNodes]
        models = dict(models or {})
        channelsOf = JobRequest.channelsOf
        given = sum(channelsOf(node) for node in volumeNodes)
        for task in JobRequest.normalizeTasks(tasks):
            try:
                card = model_card.find_model(models[task]) if task in models else model_card.default_model(task)
            except NNMambaError:
                continue  # the worker may know models this machine does not (a remote server)
            if card.in_channels == given:
                continue
            names = ", ".join(c.name for c in card.channels)
            vectors = [f"'{n.GetName()}' has {channelsOf(n)} components" for n in volumeNodes if channelsOf(n) > 1]
            if vectors:
                return (f"model '{card.name}' needs {card.in_channels} input channel(s) ({names}) but "
                        f"{'; '.join(vectors)} ({given} channels in all): choose a scalar volume, or convert it "
                        "with the Vector to Scalar Volume module.")
            return (f"model '{card.name}' needs {card.in_channels} input volume(s) ({names}) but "
                    f"{len(volumeNodes)} were given: select one volume per channel.")
        return ""
