"""Files that ``solo-os init`` copies into a new project (``project/``)."""
