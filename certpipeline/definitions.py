"""The project's definitions: everything under ``certpipeline/defs/``, found by
Dagster's defs-folder loader (``[tool.dg]`` in pyproject.toml), so a new asset,
job, schedule, sensor or resource is picked up by adding it to a defs module.

``defs`` is built when this module is imported: the CLI, the tests, ``dg`` and
``dagster`` all resolve jobs and resources from this one object."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
