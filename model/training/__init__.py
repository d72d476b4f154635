"""Training and evaluation of dgls's own models: corpus, tokenizer, FIM examples, the
resumable trainer, the evaluator and its baseline. Serving never imports this package."""
