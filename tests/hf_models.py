"""Small random Hugging Face models saved by ``transformers`` (safetensors), with a
byte-level BPE trained by ``tokenizers``: what ``mnemos import`` reads in the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ("the king and queen of denmark speak to their people in the hall; what light through yonder window "
         "breaks? it is the east, and juliet is the sun. naïve café 東京 🙂 1234 don't we'll").split()
TEXT = " ".join(np.random.default_rng(0).choice(WORDS, size=3000)) + "\n"


def hf_tokenizer():
    """A byte-level BPE of 360 tokens (``<|endoftext|>`` is id 0, the bytes in GPT-2's table order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer)
    return tok


def save_gpt2(folder: Path, dtype=None, **save_kwargs) -> Path:
    """A random 2-layer GPT2LMHeadModel (weights scaled up, so logits are far from uniform)."""
    import transformers

    config = transformers.GPT2Config(vocab_size=360, n_positions=48, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    return _save(folder, transformers.GPT2LMHeadModel, config, dtype, **save_kwargs)


def save_llama(folder: Path, dtype=None, **save_kwargs) -> Path:
    """A random 2-layer LlamaForCausalLM with grouped-query attention (4 heads share 2
    key/value heads) and an untied head."""
    import transformers

    config = transformers.LlamaConfig(vocab_size=360, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48,
                                      rms_norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=False,
                                      bos_token_id=0, eos_token_id=0)
    return _save(folder, transformers.LlamaForCausalLM, config, dtype, **save_kwargs)


def _save(folder, model_class, config, dtype, **save_kwargs) -> Path:
    import torch
    import transformers

    tok = hf_tokenizer()
    assert tok.get_vocab_size() == config.vocab_size
    torch.manual_seed(0)
    model = model_class(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder, **save_kwargs)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(folder)
    return folder
