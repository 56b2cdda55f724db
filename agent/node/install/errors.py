"""What can stop `edge-agent install` / `uninstall`; every message says what to do about it.

InstallError         base; `exit_code` is the command's exit status
  InputError         a bad bundle, wheel, option or interpreter (2): nothing was changed
  NotPermitted       not root, and no --root (2): nothing was changed
  StepFailed         a step of the plan failed (1): the message names it and the remedy
  NotOnline          a fresh install's agent did not come online in time (4): installed, running
  RolledBack         an upgrade's new version did not come online: the previous one runs again (3)
"""

from __future__ import annotations

from ..errors import AgentError


class InstallError(AgentError):
    """Base of the installer's errors."""


class InputError(InstallError):
    exit_code = 2


class NotPermitted(InstallError):
    exit_code = 2


class StepFailed(InstallError):
    exit_code = 1


class NotOnline(InstallError):
    exit_code = 4


class RolledBack(InstallError):
    exit_code = 3
