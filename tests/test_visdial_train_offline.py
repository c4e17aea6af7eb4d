"""BlipDialogRetriever.from_original_checkpoint resolves its tokenizer before converting, offline."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from chatir_env.retrievers import blip_convert  # noqa: E402
from chatir_env.retrievers.blip import BlipDialogRetriever, BlipTokenizerNotFoundError  # noqa: E402
from chatir_env.testing import DIALOGS, WORDS, bert_tokenizer, noise_images, tiny_blip  # noqa: E402

from test_hf_models import hf_to_original  # noqa: E402


@pytest.fixture
def checkpoint(tmp_path):
    hf = tiny_blip(seed=31)
    path = tmp_path / "chatir_weights.pth"
    torch.save({"model": hf_to_original(hf.state_dict())}, path)
    return hf, path


@pytest.fixture
def no_conversion(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the checkpoint was converted although the tokenizer is missing")

    monkeypatch.setattr(blip_convert, "load_original_blip", refuse)


@pytest.mark.parametrize("where", ["missing_folder", "empty_folder"])
def test_a_missing_tokenizer_fails_before_the_conversion(checkpoint, tmp_path, no_conversion, where):
    _, path = checkpoint
    folder = tmp_path / "tokenizer"
    if where == "empty_folder":
        folder.mkdir()
    with pytest.raises(BlipTokenizerNotFoundError) as err:
        BlipDialogRetriever.from_original_checkpoint(path, tokenizer=folder, device="cpu")
    message = str(err.value)
    assert str(folder) in message and "vocab.txt" in message
    assert "huggingface-cli download Salesforce/blip-itm-base-coco" in message and "tokenizer=<that folder>" in message


def test_a_folder_holding_only_vocab_txt_is_enough(checkpoint, tmp_path):
    hf, path = checkpoint
    folder = tmp_path / "bert-base-uncased"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "?", ".", *WORDS]  # bert_tokenizer()'s vocabulary
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    converted = BlipDialogRetriever.from_original_checkpoint(path, config=hf.config, tokenizer=folder, device="cpu")
    # BLIP's two extra tokens follow the BERT vocabulary, as in BLIP's own tokenizer (30522, 30523)
    assert converted.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [len(vocab), len(vocab) + 1]
    # "Is IT sunny?" lower-cased: [CLS] is it sunny ? [SEP]
    expected = [2, vocab.index("is"), vocab.index("it"), vocab.index("sunny"), 6, 3]
    assert converted.tokenizer("Is IT sunny?")["input_ids"] == expected
    reference = BlipDialogRetriever(hf, bert_tokenizer(), device="cpu")
    assert torch.equal(converted.encode_dialogs(DIALOGS), reference.encode_dialogs(DIALOGS))
    assert torch.equal(converted.encode_images(noise_images(2)), reference.encode_images(noise_images(2)))


def test_the_default_hub_tokenizer_offline_fails_before_the_conversion(checkpoint, tmp_path):
    """Offline with an empty hub cache: the default tokenizer id cannot load; the error says what to fetch."""
    import os
    import subprocess
    import sys

    _, path = checkpoint
    script = (
        "from chatir_env.retrievers import blip_convert\n"
        "from chatir_env.retrievers.blip import BlipDialogRetriever, BlipTokenizerNotFoundError\n"
        "blip_convert.load_original_blip = lambda *a, **k: (_ for _ in ()).throw(AssertionError('converted'))\n"
        "try:\n"
        f"    BlipDialogRetriever.from_original_checkpoint({str(path)!r}, device='cpu')\n"
        "except BlipTokenizerNotFoundError as err:\n"
        "    print('REFUSED', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED" in done.stdout and "Salesforce/blip-itm-base-coco" in done.stdout and "could not be loaded" in done.stdout
