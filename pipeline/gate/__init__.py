"""The release gate: a budget (``budget``), the checks against it (``checks``) and their reports (``report``)."""
