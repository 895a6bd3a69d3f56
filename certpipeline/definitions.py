"""The project's definitions: everything under ``certpipeline/defs/``, found by
Dagster's defs-folder loader (``[tool.dg]`` in pyproject.toml), so a new asset,
job, schedule, sensor or resource is picked up by adding it to a defs module.

``defs`` is built when this module is imported: the CLI, the tests, ``dg`` and
``dagster`` all resolve jobs and resources from this one object. Its assets
carry code references (file and line in the UI's catalog)."""

import warnings
from pathlib import Path

import dagster as dg



def _with_code_references(loaded: dg.Definitions) -> dg.Definitions:
    # with_source_code_references is a Dagster beta API, used knowingly. An
    # asset imported by a second defs module is listed twice: keep one of each.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(list({id(asset): asset for asset in loaded.assets}.values()))
    # Every run executes in its run worker's process, including the UI's
    # backfills and asset selections: their steps all write the one working
    # file (pool duckdb_work), so separate step processes would only queue on
    # it while each paid Python's start-up and imports, and a killed run
    # worker could leave a step process finishing after its run was failed.
    return dg.Definitions(
        assets=assets, asset_checks=loaded.asset_checks, jobs=loaded.jobs, schedules=loaded.schedules,
        sensors=loaded.sensors, resources=loaded.resources, executor=dg.in_process_executor,
    )


# The only Definitions object at module scope: the tools refuse a module with two.
defs = _with_code_references(dg.load_from_defs_folder(path_within_project=Path(__file__).parent))
