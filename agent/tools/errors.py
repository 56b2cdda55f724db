"""The errors of the client tools; each carries the exit status it ends the program with.

ToolError              exit `code`; the message says what to do
  UsageError           bad input on the command line or in a file (2)
  ClientConfigError    a configuration value; the message starts with its key (2)
  ConnectFailed        the broker cannot be reached, refused the login or TLS failed (4)
"""

from __future__ import annotations

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


class ToolError(Exception):
    """An error that ends a tool with `exit_code`, printed as `prog: error: message`."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(ToolError):
    """A flag, parameter file or batch line is wrong."""


class ClientConfigError(ToolError):
    """A configuration value is missing or wrong; the message starts with its key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class ConnectFailed(ToolError):
    """The broker is unreachable, refused the login, or the TLS handshake failed."""

    exit_code = EXIT_BROKER
