"""One table from AWS error codes and HTTP statuses to what retrying can do, for every module that calls AWS.

The sets are botocore's own (`botocore/retries/standard.py`: the codes its standard retry mode treats as throttling
and as transient, and the statuses 500, 502, 503 and 504), so our retries agree with the SDK's. Any other code is
terminal: a person must act. Pure data, so that connectors and stores can both use it.
"""

from __future__ import annotations

from enum import StrEnum

from domain.errors import ErasureError, TerminalError, Throttled, TransientError


class AwsErrorKind(StrEnum):
    THROTTLED = "throttled"  # the service asked us to slow down
    TRANSIENT = "transient"  # a fault on the service's side or on the way: worth retrying
    TERMINAL = "terminal"  # a refusal or a bad request: retrying cannot help


THROTTLED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
# InternalError and ServiceUnavailable are S3's codes for its 500 and 503 answers; DeleteObjects reports them per key,
# without a status, so they are listed by code as well.
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable", "500", "502", "503", "504"}
)
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


def classify(code: str, status: int | None = None) -> AwsErrorKind:
    """What retrying can do about an AWS error, from its code and, when there was an answer, its HTTP status."""
    if code in THROTTLED_CODES:
        return AwsErrorKind.THROTTLED
    if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
        return AwsErrorKind.TRANSIENT
    return AwsErrorKind.TERMINAL


def aws_error(message: str, code: str, status: int | None = None) -> ErasureError:
    """The project's error for an AWS error code; the message must hold no identifier and no response body."""
    kind = classify(code, status)
    if kind is AwsErrorKind.THROTTLED:
        return Throttled(message)
    if kind is AwsErrorKind.TRANSIENT:
        return TransientError(message)
    return TerminalError(message)
