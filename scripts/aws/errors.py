"""Naming what went wrong in an AWS call (one line, never an HTML page), telling a missing resource from a refused
call, and saying which credential chain was tried when none was found."""

from __future__ import annotations

import os
import re

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

# An answer with one of these codes says the resource is not there (already deleted, or never was).
NOT_FOUND_CODES = frozenset({
    "InvalidInstanceID.NotFound", "InvalidNetworkInterfaceID.NotFound", "InvalidVolume.NotFound",
    "InvalidGroup.NotFound", "InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateId.Malformed",
    "InvalidPlacementGroup.Unknown", "ResourceNotFoundException", "LoadBalancerNotFound", "ObjectNotFoundException",
    "InvalidVpcID.NotFound", "InvalidSubnetID.NotFound", "InvalidRouteTableID.NotFound",
    "InvalidInternetGatewayID.NotFound", "NatGatewayNotFound", "InvalidNatGatewayID.NotFound",
    "InvalidAllocationID.NotFound", "InvalidVpcEndpointId.NotFound", "InvalidVpcEndpoint.NotFound", "NoSuchEntity",
    "NotFoundException", "ResourceNotFound",
})


# What a failed AWS call raises: an AWS answer, botocore's own failures (connection, credentials, validation) and an
# answer botocore could not parse, which is neither (botocore.parsers.ResponseParserError derives from Exception).
CALL_FAILURES = (ClientError, BotoCoreError, ResponseParserError)


def error_code(err: BaseException) -> str:
    """The AWS error code of a ClientError ("" for anything else)."""
    return str(err.response.get("Error", {}).get("Code", "")) if isinstance(err, ClientError) else ""


def is_not_found(err: BaseException) -> bool:
    """Whether an error says the resource is not there. SageMaker says so as a ValidationException ("Could not find
    endpoint ...", "... does not exist")."""
    if not isinstance(err, ClientError):
        return False
    code, message = error_code(err), str(err.response.get("Error", {}).get("Message", ""))
    return code in NOT_FOUND_CODES or (
        code == "ValidationException" and ("could not find" in message.lower() or "does not exist" in message))


# ---- error naming: one line a person reads, never an HTML page -------------------------------------------------

# A proxy, a load balancer or a local emulator (moto answers an API it lacks with an HTML 500) can answer an AWS call
# with a web page; botocore then fails to parse it and puts the page into the exception's message.
_HTML_PAGE = re.compile(rb"\A\s*(<!doctype\s+html|<html)", re.IGNORECASE)
HTML_PAGE_MESSAGE = "the service answered with an HTML error page"


def name_html_error_pages(session: boto3.Session) -> None:
    """Make every client this session creates from now on turn an HTML error page (any status >= 400) into a
    ClientError whose code is the HTTP status and whose message says so, instead of a parser error carrying the
    page. Its `Operation` is `service:Operation`. A 5xx page is then retried like any 5xx answer. Idempotent."""
    session.events.register("before-parse", _html_error_page_as_client_error, unique_id="nemotron-html-error-pages")


def _html_error_page_as_client_error(operation_model, response_dict, customized_response_dict, **_) -> None:
    status = response_dict.get("status_code") or 0
    body = response_dict.get("body") or b""
    if status < 400 or not isinstance(body, bytes) or not _HTML_PAGE.match(body):
        return
    if status >= 500:
        response_dict["body"] = b"<html></html>"  # botocore's generic 5xx error: parsed, and retried as 5xx are
    else:  # an empty document of the protocol's kind, which parses; the Error below replaces what it yields
        json = "json" in (operation_model.service_model.protocol or "")
        response_dict["body"] = b"{}" if json else b"<ErrorResponse></ErrorResponse>"
    customized_response_dict["Error"] = {"Code": str(status), "Message": HTML_PAGE_MESSAGE,
                                         "Operation": operation_name(operation_model)}


def operation_name(operation_model) -> str:
    """`ec2:DescribeInstances`: the service's signing name (as IAM policies spell it) and the operation."""
    service = operation_model.service_model
    prefix = service.signing_name or service.endpoint_prefix or service.service_name
    return f"{prefix}:{operation_model.name}"


def describe_error(err: BaseException, operation: str | None = None, limit: int = 300) -> str:
    """One line naming what went wrong in an AWS call, for a table or a log; `operation` (`ec2:DescribeInstances`)
    where the caller knows it better than the error does.

    An AWS error: `Code: message`. An HTTP status without an AWS error body (an HTML page, an empty 5xx):
    `ec2:DescribeInstances failed: HTTP 503 (the service answered with an HTML error page)`. An answer botocore could
    not parse: the operation and that fact, never the body. No credentials, no connection: botocore's own sentence.
    Anything else: its type and message, first line only.
    """
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", "") or "")
        status = (err.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        op = error.get("Operation") or operation or err.operation_name
        if code.isdigit() or not code:
            why = HTML_PAGE_MESSAGE if _looks_like_html(message) else (message or "no error body")
            return _one_line(f"{op} failed: HTTP {code or status} ({why})", limit)
        if _looks_like_html(message):
            message = HTML_PAGE_MESSAGE
        return _one_line(f"{code}: {message}", limit)
    if isinstance(err, ResponseParserError):
        what = HTML_PAGE_MESSAGE if "html" in str(err).lower() else "the answer is not one AWS gives"
        return _one_line(f"{operation or 'an AWS call'} failed: its answer could not be read ({what})", limit)
    if isinstance(err, BotoCoreError):
        return _one_line(f"{type(err).__name__}: {err}", limit)
    return _one_line(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__, limit)


def _looks_like_html(text: str) -> bool:
    return bool(_HTML_PAGE.match(text.encode(errors="replace"))) or "<html" in text.lower()


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


# ---- credentials -------------------------------------------------------------------------------------------------

# What each of botocore's credential providers looks at, in the order botocore tries them.
_PROVIDER_SOURCES = {
    "env": "environment variables",
    "assume-role": "shared config/credentials files",
    "assume-role-with-web-identity": "web identity token",
    "sso": "SSO",
    "shared-credentials-file": "shared config/credentials files",
    "login": "console login",
    "custom-process": "credential_process",
    "config-file": "shared config/credentials files",
    "ec2-credentials-file": "/etc/boto.cfg",
    "boto-config": "boto config",
    "container-role": "container and instance metadata",
    "iam-role": "container and instance metadata",
}


def missing_credentials(session: boto3.Session) -> str | None:
    """None when the session finds credentials; else one line saying which credential chain was tried
    ("no AWS credentials: checked environment variables, shared config/credentials files (profile default), ...").
    A chain that fails part-way (a half-set pair, an expired SSO token) is named the same way, with its reason."""
    try:
        credentials = session.get_credentials()
        if credentials is not None:
            credentials.get_frozen_credentials()  # a refreshable source (SSO, a role) fails here, not later
            return None
        reason = ""
    except (BotoCoreError, ClientError) as err:
        reason = f" ({describe_error(err, limit=200)})"
    botocore_session = session._session  # noqa: SLF001 - boto3 exposes the provider chain only here
    try:
        methods = [p.METHOD for p in botocore_session.get_component("credential_provider").providers]
    except Exception:  # noqa: BLE001 - the chain's names are a courtesy; the message stands without them
        methods = list(_PROVIDER_SOURCES)
    sources = list(dict.fromkeys(_PROVIDER_SOURCES.get(m, m) for m in methods))
    profile = session.profile_name or "default"
    files = "shared config/credentials files"
    sources = [f"{s} (profile {profile}: {_credential_files(botocore_session)})" if s == files else s
               for s in sources]
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        sources = [s + " (instance metadata disabled by AWS_EC2_METADATA_DISABLED)"
                   if s.startswith("container and instance") else s for s in sources]
    return f"no AWS credentials{reason}: checked " + ", ".join(sources)


def _credential_files(botocore_session) -> str:
    paths = [botocore_session.get_config_variable(variable) for variable in ("credentials_file", "config_file")]
    return ", ".join(os.path.expanduser(p) for p in paths if p) or "default paths"
