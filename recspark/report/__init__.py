"""The HTML run report: :mod:`.collect` gathers what a train run (and the segment and
re-score runs made from it) wrote, :mod:`.render` renders the Jinja2 template into one
self-contained ``report.html`` in the run folder."""
