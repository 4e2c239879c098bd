#!/usr/bin/env python3
"""Recipe: gender (gender recognition) with a swappable encoder.

Usage::

    python recipes/gender/train.py hparams/gender.yaml --train_csv=[prep/en/a.csv] \
        --test_csv=[prep/en/test.csv] --seed=42 \
        --output_folder=results/gender/en/42 --encoder=tiny_hubert --preset=toy

Every YAML key can be overridden; the Brain, data pipeline and evaluation live in the
library (``cltm_sb.recipe.run.run_recipe``, ``cltm_sb.recipe.brains``), shared with the other recipe.

Rerunning the same command in the same output folder resumes from the last checkpoint, or,
for a finished run, prints its record (``--overwrite`` redoes it). Several processes::

    torchrun --nproc_per_node=2 recipes/gender/train.py hparams/gender.yaml ... --distributed_backend=gloo
"""

import logging
import sys

from cltm_sb.recipe.run import script_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    # The record as JSON; a user error (bad override, missing manifest...) as one line, status 2.
    sys.exit(script_main("gr", sys.argv[1:]))
