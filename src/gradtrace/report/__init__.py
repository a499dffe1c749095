"""Reports made of several records: the verdict and figures of a monitored run."""

from gradtrace.report.monitor import monitor_report, read_run

__all__ = ["monitor_report", "read_run"]
