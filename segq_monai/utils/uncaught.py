"""Imported for its effect: an uncaught exception whose chain holds bad input ends with the project's message.

The bundle configs and the deploy overlay list ``"$import segq_monai.utils.uncaught"`` among their imports, which
MONAI's config parser evaluates before any other item, so ``python -m monai.bundle run`` ends a refused run on the
message that names the file or id and the fix (:func:`segq_monai.utils.errors.report_uncaught`), after the usual
traceback. Callers that catch the exception (``ConfigWorkflow`` in Python, a MONAI Label server, the fit) see no
change.
"""

from __future__ import annotations

from segq_monai.utils.errors import report_uncaught

report_uncaught()
