"""``python -m train.gpt fit --config configs/gpt.yaml``: the byte-level GPT on the standard library's source."""

from .cli import gpt_main

if __name__ == "__main__":
    gpt_main()
