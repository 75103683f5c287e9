"""Training: ``train(load_config("configs/x.yaml", ["optim.lr=5e-4"]))``, or ``speechs2s train CONFIG``."""
from speechs2s.train.config import TrainConfig, load_config
from speechs2s.train.trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "load_config", "train"]
