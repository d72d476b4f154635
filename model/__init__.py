"""dgls.model: DiffusionGemma's network, sampler, checkpoint loader and tokenizer."""
