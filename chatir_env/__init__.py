"""chatir-env: Gymnasium environments for chat-based image retrieval (ChatIR, Levy et al., NeurIPS 2023).

Importing the package registers the environments:

- ``ChatIR/Shapes-v0``: procedural Shapes scenes, scene oracle, learned dual-encoder retriever (CPU).
- ``ChatIR/ShapesOracle-v0``: the same world ranked by the exact log-likelihood retriever.
- ``ChatIR/VisDial-v0``, ``ChatIR/VisDialReplay-v0``: the paper's benchmark (BLIP2 live, or its recorded answers).
- ``ChatIR/VisDialTrain-v0``, ``ChatIR/VisDialTrainReplay-v0``: VisDial v1.0 train for training questioners
  (BLIP2 live through the answer store, or the store and VisDial's human answers alone).

Both Shapes envs play the ``train`` split's targets unless ``split="benchmark"`` is given: a training
loop built with ``gymnasium.make`` never sees a benchmark target by default.
"""

from gymnasium.envs.registration import register, registry

from .dialog import Dialog
from .metrics import bri, hits_at_k, target_ranks

__version__ = "0.1.0"

_ENVS = {
    "ChatIR/Shapes-v0": {"world": "shapes", "split": "train"},
    "ChatIR/ShapesOracle-v0": {"world": "shapes_oracle", "split": "train"},
    "ChatIR/VisDial-v0": {"world": "visdial"},
    "ChatIR/VisDialReplay-v0": {"world": "visdial_replay"},
    "ChatIR/VisDialTrain-v0": {"world": "visdial_train"},
    "ChatIR/VisDialTrainReplay-v0": {"world": "visdial_train_replay"},
}
for _id, _kwargs in _ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point="chatir_env.env:ChatIREnv", vector_entry_point="chatir_env.vector_env:ChatIRVectorEnv",
                 kwargs=_kwargs)

__all__ = ["Dialog", "target_ranks", "hits_at_k", "bri", "__version__"]
