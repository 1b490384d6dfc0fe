"""What an AWS error means for a host's status: said once for every transport that calls AWS (EIC, SSM)."""
from __future__ import annotations

# Refused by IAM or by the credentials themselves: the transport may not reach the host → AUTH_FAILED.
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
                    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
                    "SignatureDoesNotMatch", "AuthorizationError"})
# Worth another try later (botocore's own retries already ran).
THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
                       "ServiceUnavailable", "ServiceUnavailableException", "InternalServerError",
                       "ServiceException"})


def error_code(exc: BaseException) -> tuple[str, str]:
    """(code, message) of a botocore ClientError; ("", text) for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return str(error.get("Code", "")), str(error.get("Message", ""))
    return "", f"{type(exc).__name__}: {exc}"


def is_denied(exc: BaseException) -> bool:
    return error_code(exc)[0] in DENIED


def aws_reason(exc: BaseException) -> str:
    """`Code: message` for a log line or a verdict's detail."""
    code, message = error_code(exc)
    return f"{code}: {message}" if code else message
