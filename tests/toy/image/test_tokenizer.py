"""The toy CLIP tokenizer: local files only, one token per grammar word."""

from transformers import CLIPTokenizer

from diffalign.toy.image.tokenizer import build_tokenizer, toy_words


def test_each_toy_word_is_one_token_and_reloads(tmp_path):
    tok = build_tokenizer(tmp_path / "tok", model_max_length=16)
    assert len(tok) > 5 and tok.model_max_length == 16
    for word in toy_words():
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    ids = tok("a small blue square on a white background").input_ids
    assert len(ids) == 10 and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.eos_token_id == len(tok) - 1  # highest id: open_clip's argmax pooling finds it
    assert len(tok("zebra!").input_ids) > 3  # unknown words still tokenize, byte by byte
    tok.save_pretrained(tmp_path / "saved")
    again = CLIPTokenizer.from_pretrained(tmp_path / "saved")
    assert again.model_max_length == 16 and again("a red circle").input_ids == tok("a red circle").input_ids
