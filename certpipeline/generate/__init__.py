"""Deterministic generator of realistic synthetic landing files (contract sections 1 and 2).

``generate_landing`` writes ``landing/events/date=YYYY-MM-DD/part-NNNNN.jsonl[.gz]``
for ``days`` consecutive export days ending at ``end_date``, imitating a corporate
learning platform that starts exporting on the first day:

* ``catalog`` (with ``sessions``): groups, certificates, courses and paths, question
  sets, sessions; imported on day 0, with a few changes during the window;
* ``learners``: each learner's profile, memberships, enrollments, progress, awards,
  answers and deletion; day 0 imports the history of those who registered before;
* ``delivery``: envelopes and the export's defects (late lines, duplicates,
  malformed lines, gzipped days), into the day folders (``DataPaths.landing``).

The payloads follow :mod:`certpipeline.events` (field names, allowed values), and
malformed lines break a field according to its declared kind. Everything is drawn
from one ``random.Random(seed)``, so the bytes are a function of (seed, learners,
days, end_date, max_lines_per_file); a test pins their digest.
"""

from certpipeline.generate.delivery import MALFORMED_KINDS
from certpipeline.generate.landing import GenerationSummary, generate_landing

__all__ = ["MALFORMED_KINDS", "GenerationSummary", "generate_landing"]
