"""Study files: schema, loading with ``_base_`` and overrides, expansion into trials."""

from ablate.study.config import TrialConfig
from ablate.study.expand import Trial, Variant, expand, trials
from ablate.study.loader import StudyError, load_study
from ablate.study.schema import Study

__all__ = ["Study", "StudyError", "Trial", "TrialConfig", "Variant", "expand", "load_study", "trials"]
