"""Join, check and unpack a model archive split across files, once, into a transformers folder."""

import os

from w2s_align.logs import setup_stage_logging

setup_stage_logging(snakemake.log[0])

from w2s_align.models.archive import unpack_archive
from w2s_align.settings.specs import ModelSpec

unpack_archive(ModelSpec.from_json(snakemake.params.spec), os.path.dirname(snakemake.output[0]))
