"""The values the command line's device, precision, speed and W&B options take, in a module that
imports nothing (so ``cluster-ssl`` parses and checks its arguments before torch loads)."""

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
SPEED_CHOICES = ("auto", "off")
WANDB_MODES = ("disabled", "offline", "online")
