"""Sample text from a trained character-level language model (``pgf-sim generate RUN_DIR``)."""
from __future__ import annotations

from pathlib import Path

import torch

from pgf_sim.core import ConfigError


@torch.no_grad()
def sample(model: torch.nn.Module, prompt_ids: torch.Tensor, n: int, *, block_size: int, temperature: float,
           seed: int) -> torch.Tensor:
    """``n`` new ids after ``prompt_ids`` (1-D), each drawn from softmax(logits / temperature) of
    the last position, the context cropped to the model's ``block_size``. Same seed, same text."""
    if temperature <= 0:
        raise ConfigError(f"--temperature must be > 0, got {temperature}")
    gen = torch.Generator().manual_seed(seed)
    ids = prompt_ids.clone()
    for _ in range(n):
        logits = model(ids[-block_size:][None])[0, -1].float()  # (vocab,)
        probs = torch.softmax(logits / temperature, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)])
    return ids[len(prompt_ids):]


def generate(run_dir: str | Path, *, chars: int = 300, temperature: float = 1.0, seed: int = 0,
             prompt: str = "\n") -> str:
    """The prompt followed by ``chars`` sampled characters from a finished text run."""
    from pgf_sim.train.data import load_data
    from pgf_sim.train.text import TextData
    from pgf_sim.train.trainer import load_trained

    if chars < 1:
        raise ConfigError(f"--chars must be >= 1, got {chars}")
    if not prompt:
        raise ConfigError("--prompt must not be empty (the model needs at least one character to continue)")
    model, cfg = load_trained(run_dir)
    data = load_data(cfg.data)
    if not isinstance(data, TextData):
        raise ConfigError(f"{run_dir}: run {cfg.name!r} was trained on {cfg.data.name!r}, not a text set; "
                          "generate samples from character-level language models")
    tok = data.tokenizer
    out = sample(model, tok.encode(prompt), chars, block_size=data.block_size, temperature=temperature, seed=seed)
    return prompt + tok.decode(out)
