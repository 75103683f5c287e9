"""Search algorithms that turn model outputs into results: ``asr.py`` (greedy, beam search with CTC
prefix scoring, CTC prefix beam search) and ``tts.py`` (the autoregressive synthesis loop)."""
