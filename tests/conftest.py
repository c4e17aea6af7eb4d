import json
import os
from pathlib import Path

import pytest
import torch

# Tests never write to the user's cache.
os.environ.setdefault("CHATIR_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "chatir"))
torch.set_num_threads(1)

SMALL = {"corpus_size": 2_000, "num_targets": 200}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    """A small random Shapes dual encoder saved the way the trainer exports one."""
    from safetensors.torch import save_file

    from chatir_env.worlds.shapes_retrievers import ShapesDualEncoder

    torch.manual_seed(0)
    model = ShapesDualEncoder(dim=32, cnn_width=8, text_width=32)
    path = tmp_path_factory.mktemp("weights") / "tiny_dual.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"model": model.config}))
    return str(path)


def _chatir_data():
    """The official ChatIR release (../shared/data/chatir or $CHATIR_DATA), when all of it is there."""
    from chatir_env.data.chatir_files import DIALOG_FILES, SEARCH_SPACE_FILE, default_data_dir

    path = default_data_dir()
    return path if path and all((path / f).is_file() for f in (*DIALOG_FILES, SEARCH_SPACE_FILE)) else None


CHATIR_DATA = _chatir_data()
needs_chatir_data = pytest.mark.skipif(
    CHATIR_DATA is None,
    reason="the ChatIR release is not here: set CHATIR_DATA or run `chatir download --data-dir ../shared/data/chatir`",
)
