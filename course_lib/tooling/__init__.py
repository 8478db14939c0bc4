"""Tools around the course, not part of the lessons.

* ``publish``: render every lesson to an offline HTML site or reveal.js slides
  (``python tasks.py site`` / ``python tasks.py slides``);
* ``bench``: time course_lib against PyTorch's modules and write BENCHMARKS.md
  (``python tasks.py bench``).
"""
