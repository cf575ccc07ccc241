"""The exception hierarchy, with Azure ML v1's class names so user code catches them unchanged.

Validation errors raised at the call site are also `TypeError` or `ValueError`, so both
`except UserErrorException` (Azure scripts) and `except ValueError` (plain Python) work.
"""

from __future__ import annotations


class AzureMLException(Exception):
    """Base of every runwire error (Azure ML v1's base class name)."""


RunwireError = AzureMLException


class UserErrorException(AzureMLException):
    """The caller asked for something that cannot be done."""


class MetricTypeError(UserErrorException, TypeError):
    """A metric value or name has a type runwire does not accept."""


class MetricValueError(UserErrorException, ValueError):
    """A metric value or name breaks a rule (length, range, shape)."""


class AzureMLAggregatedException(UserErrorException):
    """Several errors at once (Azure raises it for artifact conflicts)."""


class ActivityFailedException(AzureMLException):
    """A run that was waited on ended `Failed`."""


class RunEnvironmentException(AzureMLException):
    """No run context where one was required."""


class SnapshotException(AzureMLException):
    """A snapshot could not be taken or restored."""


class ExperimentExecutionException(AzureMLException):
    """A submission or an execution could not go on."""


class ServiceUnavailableError(AzureMLException):
    """The collector (or the agent) cannot be reached."""


class RunNotFoundError(UserErrorException):
    """No run with that id."""
