"""The errors of the client tools; each carries the exit status it ends the program with.

EdgeError              (agent.common.errors: the project's one base) `exit_code`
  ConfigError          a configuration value; `key` names it (2; the settings loader's)
  ToolError            the message says what to do
    UsageError         bad input on the command line or in a file (2)
    ConnectFailed      the broker cannot be reached, refused the login or TLS failed (4)
"""

from __future__ import annotations

from agent.common.errors import ConfigError, EdgeError

__all__ = [
    "EXIT_BROKER",
    "EXIT_NOT_COMPLETED",
    "EXIT_OK",
    "EXIT_STATUS_HELP",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "ConfigError",
    "ConnectFailed",
    "EdgeError",
    "ToolError",
    "UsageError",
]

#: Exit statuses shared by edge-submit and edge-watch (documented in their --help).
EXIT_OK = 0
EXIT_NOT_COMPLETED = 1  # a result came and is not `completed`, or the agent refused the message
EXIT_USAGE = 2
EXIT_TIMEOUT = 3  # a result (or the messages asked for) did not come in time
EXIT_BROKER = 4

EXIT_STATUS_HELP = (
    "exit status: 0 every result completed; 1 a result is not completed (rejected, abandoned, expired,"
    " cancelled) or the agent refused the message (rejects report); 2 bad usage or configuration;"
    " 3 timed out waiting; 4 broker unreachable, login refused or TLS failed"
)


class ToolError(EdgeError):
    """An error that ends a tool with `exit_code`, printed as `prog: error: message`."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)


class UsageError(ToolError):
    """A flag, parameter file or batch line is wrong."""


class ConnectFailed(ToolError):
    """The broker is unreachable, refused the login, or the TLS handshake failed."""

    exit_code = EXIT_BROKER
