"""What a build takes from a tuning database: `tuning_from` (used by compile and compile_levels)."""

from __future__ import annotations

import os

from gearshift.errors import InputError
from gearshift.schedules.knobs import Tuning
from gearshift.schedules.targets import TargetInfo
from gearshift.tune.database import RECORDS, Database, target_key
from gearshift.tune.metaschedule import searched_schedules


def tuning_from(db: str | os.PathLike | Database | None, info: TargetInfo) -> Tuning | None:
    """The fastest confirmed knobs the database at `db` holds for `info`, and MetaSchedule's schedules
    for the dense kernels where they won (None: no database)."""
    if db is None:
        return None
    db = db if isinstance(db, Database) else Database(db)
    if not db.file.exists():
        raise InputError(f"no tuning database at {db.path} ({RECORDS} missing): run `gearshift tune` first")
    key = target_key(info)
    return Tuning(db.best(key), dense=searched_schedules(db, key, info))
