"""The ``scorekit`` command line: everything here serves the command, nothing in the library imports it.

- :mod:`~scorekit.cli.command`: the parser, the sub-command handlers and :func:`main`;
- :mod:`~scorekit.cli.config_files`: preset, config file and ``key=value`` overrides -> a ``RunConfig``;
- :mod:`~scorekit.cli.outputs`: datasets of a run, its samples, inpaintings and result files;
- :mod:`~scorekit.cli.evaluate`: ``scorekit evaluate`` (metrics beside the real-against-real floor);
- :mod:`~scorekit.cli.heap`: the glibc heap setting the command applies to itself.
"""

from scorekit.cli.command import main, report_errors

__all__ = ["main", "report_errors"]
