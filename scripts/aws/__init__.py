"""The scripts' one AWS layer: sessions and clients (standard credential chain, AWS_ENDPOINT_URL, botocore's standard
retry mode), error naming and not-found checks, botocore waiter polls, one bounded wait loop and bounded NextToken
paging."""

from scripts.aws.clients import DEFAULT_TOTAL_ATTEMPTS, AwsClients, retry_config, session_for
from scripts.aws.errors import (
    CALL_FAILURES,
    HTML_PAGE_MESSAGE,
    NOT_FOUND_CODES,
    describe_error,
    error_code,
    is_not_found,
    missing_credentials,
    name_html_error_pages,
    operation_name,
)
from scripts.aws.paging import token_pages
from scripts.aws.waiting import FAILURE, RETRY, SUCCESS, most_polls, wait_until, waiter_state

__all__ = [
    "CALL_FAILURES", "DEFAULT_TOTAL_ATTEMPTS", "FAILURE", "HTML_PAGE_MESSAGE", "NOT_FOUND_CODES", "RETRY", "SUCCESS",
    "AwsClients",
    "describe_error", "error_code", "is_not_found", "missing_credentials", "most_polls", "name_html_error_pages",
    "operation_name", "retry_config", "session_for", "token_pages", "wait_until", "waiter_state",
]
