"""``python -m ib_pipeline.cli``: the same command as the ``ib-pipeline`` script."""

from ib_pipeline.cli import main

if __name__ == "__main__":
    main()
