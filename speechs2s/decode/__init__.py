"""Search algorithms that turn model outputs into results: ``asr.py`` (greedy, beam search with CTC
prefix scoring, CTC prefix beam search, sampled N-best for MWER training) and ``tts.py`` (the autoregressive synthesis loop)."""
