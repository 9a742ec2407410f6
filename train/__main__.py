"""``python -m train fit --config configs/mnist.yaml`` (also ``validate``, ``test``, ``predict``; ``--help``)."""

from .cli import main

if __name__ == "__main__":
    main()
