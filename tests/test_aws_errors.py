"""One table from AWS error codes to what retrying can do, the same for the S3 connector and the vault's KMS key."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from connectors.aws import client_error, refusal_error
from domain.aws_errors import AwsErrorKind, classify
from domain.errors import ErasureError, TerminalError, Throttled, TransientError
from stores.vault import _kms_error

THROTTLING = ["SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"]
TRANSIENT = [("InternalError", 500), ("ServiceUnavailable", 503), ("RequestTimeout", 400), ("503", 503)]
TERMINAL = [("AccessDenied", 403), ("NoSuchBucket", 404), ("InvalidRequest", 400), ("NotFoundException", 400)]


def aws_answer(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "echoes uploads/1/clip.mp4"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Op",
    )


def every_mapping(code: str, status: int) -> list[ErasureError]:
    """The error each caller makes of one AWS answer: a call's error (s3), a per-key refusal (s3), and KMS."""
    return [
        client_error("s3 uploads: op", aws_answer(code, status)),
        refusal_error("s3 uploads: op", [code]),
        _kms_error("op", aws_answer(code, status)),
    ]


@pytest.mark.parametrize("code", THROTTLING)
def test_throttling_codes_are_throttled_everywhere(code: str) -> None:
    # S3 answers SlowDown with 503, KMS answers ThrottlingException with 400: the code decides, not the status
    assert classify(code, 503) is classify(code, 400) is classify(code) is AwsErrorKind.THROTTLED
    assert all(isinstance(error, Throttled) for error in every_mapping(code, 503))


@pytest.mark.parametrize(("code", "status"), TRANSIENT)
def test_transient_codes_are_retried_but_not_throttled(code: str, status: int) -> None:
    assert classify(code, status) is AwsErrorKind.TRANSIENT
    errors = every_mapping(code, status)
    assert all(isinstance(e, TransientError) and not isinstance(e, Throttled) for e in errors)


def test_a_server_fault_is_transient_by_its_status_whatever_its_code() -> None:
    # KMS: KMSInternalException is a 500, DependencyTimeoutException a 503
    assert (
        classify("KMSInternalException", 500) is classify("DependencyTimeoutException", 503) is AwsErrorKind.TRANSIENT
    )
    assert isinstance(_kms_error("decrypt", aws_answer("KMSInternalException", 500)), TransientError)


@pytest.mark.parametrize(("code", "status"), TERMINAL)
def test_everything_else_is_terminal(code: str, status: int) -> None:
    assert classify(code, status) is AwsErrorKind.TERMINAL
    assert all(isinstance(error, TerminalError) for error in every_mapping(code, status))


def test_messages_carry_the_code_and_never_the_response_message() -> None:
    for error in every_mapping("SlowDown", 503):
        assert "SlowDown" in str(error) and "uploads/1" not in str(error)
