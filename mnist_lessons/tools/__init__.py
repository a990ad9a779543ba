"""The book's own tooling: what builds, times and hands out the book, not what it teaches.

A student never needs to open this folder. The lesson API (``data``, ``model``, ``train``,
``evaluate``, ``numpy_ops``, ``viz``, ``widgets``, ``exercises``) lives one level up.

- :mod:`~mnist_lessons.tools.glue`            numbers computed in a cell, into the book's prose
- :mod:`~mnist_lessons.tools.run_times`       the run time each page states, and how it is measured
- :mod:`~mnist_lessons.tools.editions`        the reader, student and instructor notebooks
- :mod:`~mnist_lessons.tools.files`           writing cache files atomically
- :mod:`~mnist_lessons.tools.course_model`    trains the course model the package ships
- :mod:`~mnist_lessons.tools.web_model`       the course model's weights for the live page
- :mod:`~mnist_lessons.tools.grade`           grades a class's notebooks in sandboxed kernels
- :mod:`~mnist_lessons.tools.grade_codec`     values as JSON between the grader and a kernel
- :mod:`~mnist_lessons.tools.otter_export`    the exercises as otter-grader assignments
"""
