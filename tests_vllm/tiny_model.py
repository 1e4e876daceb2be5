"""A tiny random causal LM built locally for the real-server test: no hub download, seconds to build.

A word-level tokenizer trained with `tokenizers` on a few lines of text and a 2-layer LlamaForCausalLM (head_dim 64:
vLLM's CPU attention has no kernel for smaller heads) with random bfloat16 weights, saved as safetensors with a plain
chat template, so vLLM serves completions and chat requests alike.
"""

from __future__ import annotations

from pathlib import Path

TEXT = """\
the quick brown fox jumps over the lazy dog
a tiny model answers every question with random words
vLLM serves this model on the CPU for the project's tests
the API key guards every path but health
hello world how are you today
one two three four five six seven eight nine ten
"""

CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def build_tiny_model(directory: Path, seed: int = 0) -> Path:
    """Write config, weights and tokenizer of a tiny random Llama into `directory` and return it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    unk, bos, eos, pad = "<unk>", "<s>", "</s>", "<pad>"
    tokenizer = Tokenizer(models.WordLevel(unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(TEXT.splitlines(), trainers.WordLevelTrainer(special_tokens=[unk, bos, eos, pad]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token=unk, bos_token=bos, eos_token=eos,
                                   pad_token=pad, model_max_length=256)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64 * ((tokenizer.get_vocab_size() + 63) // 64), hidden_size=128,
                         intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=64,
                         max_position_embeddings=256, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=False, torch_dtype="bfloat16")
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(directory, safe_serialization=True)
    return directory


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))
